package proxy

import "testing"

func TestRoleOffset(t *testing.T) {
	cases := []struct {
		in     string
		off    int64
		master bool
		ok     bool
	}{
		{"*3\r\n$6\r\nmaster\r\n:3129659\r\n*2\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n*0\r\n", 3129659, true, true},
		{"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n", 0, true, true},
		{"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n", 3167038, false, true},
		{"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$7\r\nconnect\r\n:-1\r\n", -1, false, true},
		{"*3\r\n+master\r\n:12\r\n*0\r\n", 12, true, true},
		{"-ERR unknown command\r\n", 0, false, false},
		{"*3\r\n$8\r\nsentinel\r\n*0\r\n", 0, false, false},
		{"*3\r\n$6\r\nmaster\r\n", 0, false, false},
		{"*3\r\n$6\r\nmast", 0, false, false},
		{"*5\r\n$5\r\nslave\r\n$99\r\nx\r\n", 0, false, false},
		{"", 0, false, false},
	}
	for _, c := range cases {
		off, master, ok := roleOffset([]byte(c.in))
		if ok != c.ok || (ok && (off != c.off || master != c.master)) {
			t.Errorf("roleOffset(%q) = %d, %v, %v; want %d, %v, %v", c.in, off, master, ok, c.off, c.master, c.ok)
		}
	}
}

func FuzzRoleOffset(f *testing.F) {
	f.Add([]byte("*3\r\n$6\r\nmaster\r\n:3129659\r\n*0\r\n"))
	f.Add([]byte("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n"))
	f.Add([]byte("*3\r\n$-1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		roleOffset(b) // must not panic
	})
}
