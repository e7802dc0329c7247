package proxy

import "testing"

func TestPubSubConfirmation(t *testing.T) {
	for _, tc := range []struct {
		name, frame, kind string
		n                 int
		ok                bool
	}{
		{"RESP2 subscribe", "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n", "subscribe", 1, true},
		{"RESP3 psubscribe", ">3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n", "psubscribe", 3, true},
		{"bare unsubscribe, nil channel", "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n", "unsubscribe", 0, true},
		{"RESP3 null channel", ">3\r\n$12\r\nsunsubscribe\r\n_\r\n:0\r\n", "sunsubscribe", 0, true},
		{"message is no confirmation", "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n", "", 0, false},
		{"pmessage", "*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npx\r\n$2\r\nhi\r\n", "", 0, false},
		{"short bulk", "*3\r\n$20\r\nsubscribe\r\n", "", 0, false},
		{"negative length", "*3\r\n$-5\r\n", "", 0, false},
		{"garbage", "*3\r\n", "", 0, false},
		{"empty", "", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, n, ok := pubsubConfirmation([]byte(tc.frame))
			if kind != tc.kind || n != tc.n || ok != tc.ok {
				t.Fatalf("got %q %d %v, want %q %d %v", kind, n, ok, tc.kind, tc.n, tc.ok)
			}
		})
	}
}

// Counts follow the confirmations: channels and patterns share Redis's
// count, shard channels have their own.
func TestSubCounts(t *testing.T) {
	var c subCounts
	for _, f := range []string{
		"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
		"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
		"*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n",
		"*3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n",
		"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n",
	} {
		c.notePubSub([]byte(f))
	}
	if c != (subCounts{sub: 1, psub: 1, ssub: 1}) || !c.any() {
		t.Fatalf("%+v", c)
	}
	c.notePubSub([]byte("*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:1\r\n"))
	c.notePubSub([]byte("*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n"))
	c.notePubSub([]byte("*3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n"))
	if c.any() {
		t.Fatalf("%+v after unsubscribing everything", c)
	}
}

func FuzzPubSubConfirmation(f *testing.F) {
	for _, s := range []string{
		"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n", ">3\r\n$12\r\nsunsubscribe\r\n_\r\n:0\r\n",
		"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n", "*3\r\n$-5\r\n", "*3\r\n$9999999999999999999\r\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c subCounts
		c.notePubSub(b) // must not panic
		if c.sub < 0 || c.psub < 0 || c.ssub < 0 {
			t.Fatalf("negative count %+v", c)
		}
	})
}

func TestHelloNoAuthText(t *testing.T) {
	for v, want := range map[string]string{
		"7.0.15": errHelloNoAuth70, "6.2.14": errHelloNoAuth70, "7.2.4": errHelloNoAuth, "8.0.0": errHelloNoAuth, "": errHelloNoAuth,
	} {
		if got := helloNoAuth(v); got != want {
			t.Errorf("%q: %q", v, got)
		}
	}
}
