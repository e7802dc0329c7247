package redistest

import (
	"bufio"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     any
		wantErr  error
	}{
		{"simple", "+PONG\r\n", "PONG", nil},
		{"error", "-LOADING Redis is loading\r\n", nil, respError("LOADING Redis is loading")},
		{"integer", ":-12\r\n", int64(-12), nil},
		{"bulk", "$5\r\na\r\nbc\r\n", "a\r\nbc", nil},
		{"empty bulk", "$0\r\n\r\n", "", nil},
		{"nil bulk", "$-1\r\n", nil, nil},
		{"nil array", "*-1\r\n", nil, nil},
		{"nested", "*2\r\n$1\r\na\r\n*1\r\n:1\r\n", []any{"a", []any{int64(1)}}, nil},
		{"error element", "*2\r\n-ERR x\r\n+OK\r\n", []any{respError("ERR x"), "OK"}, nil},
		{"negative bulk", "$-2\r\n", nil, errRedistestBadReply},
		{"huge bulk", "$99999999999\r\n", nil, errRedistestBadReply},
		{"huge array", "*99999999\r\n", nil, errRedistestBadReply},
		{"negative array", "*-5\r\n", nil, errRedistestBadReply},
		{"bad type", "!3\r\nabc\r\n", nil, errRedistestBadReply},
		{"empty line", "\r\n", nil, errRedistestBadReply},
		{"too deep", strings.Repeat("*1\r\n", maxAdminDepth+2) + ":1\r\n", nil, errRedistestBadReply},
		{"long line", "+" + strings.Repeat("x", maxAdminLineBytes+1) + "\r\n", nil, errRedistestBadReply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readReply(bufio.NewReader(strings.NewReader(tc.in)), 0)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("readReply = %#v, %v; want %#v", got, err, tc.want)
			}
		})
	}
}

func FuzzReadReply(f *testing.F) {
	for _, seed := range []string{
		"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*-1\r\n",
		"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", "$-2\r\n", "*-5\r\n", "$99999999999\r\n", "\r\n", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _ = readReply(bufio.NewReader(strings.NewReader(string(in))), 0)
	})
}
