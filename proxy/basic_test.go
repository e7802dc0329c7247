package proxy

import (
	"context"
	"testing"
)

func TestSetGetThroughProxy(t *testing.T) {
	_, srv := newTopology(t, 0, Config{})
	c := client(t, srv.Addr(), nil)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
}
