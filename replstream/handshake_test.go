package replstream

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const testReplID = "8d1d7e9ea5b5a1c1f2b2b3a3c4d4e5f5a6b6c7d7"

func TestParsePSYNCReply(t *testing.T) {
	for _, tc := range []struct {
		line string
		want psyncReply
		err  error
	}{
		{"+FULLRESYNC " + testReplID + " 0", psyncReply{kind: psyncFull, replid: testReplID}, nil},
		{"+FULLRESYNC " + testReplID + " 123456789012", psyncReply{kind: psyncFull, replid: testReplID, offset: 123456789012}, nil},
		{"+CONTINUE", psyncReply{kind: psyncContinue}, nil},
		{"+CONTINUE " + testReplID, psyncReply{kind: psyncContinue, replid: testReplID}, nil},
		// redis-server keeps its ID unless exactly 40 bytes follow.
		{"+CONTINUE abc", psyncReply{kind: psyncContinue}, nil},
		{"+CONTINUE " + testReplID + "0", psyncReply{kind: psyncContinue}, nil},
		{"-NOMASTERLINK Can't SYNC while not connected with my master", psyncReply{}, ErrMasterError},
		{"-LOADING Redis is loading the dataset in memory", psyncReply{}, ErrMasterError},
		{"-ERR unknown command 'PSYNC'", psyncReply{}, ErrMasterError},
		{"+FULLRESYNC " + testReplID, psyncReply{}, ErrProtocol},
		{"+FULLRESYNC " + testReplID + " -1", psyncReply{}, ErrProtocol},
		{"+FULLRESYNC " + testReplID + " 01", psyncReply{}, ErrProtocol},
		{"+FULLRESYNC " + testReplID + " 1 2", psyncReply{}, ErrProtocol},
		{"+FULLRESYNC " + testReplID[:39] + " 1", psyncReply{}, ErrProtocol},
		{"+FULLRESYNC " + strings.Repeat(" ", 40) + " 1", psyncReply{}, ErrProtocol},
		{"+FULLRESYNC  " + testReplID + " 1", psyncReply{}, ErrProtocol},
		{"+CONTINUEX", psyncReply{}, ErrProtocol},
		{"+OK", psyncReply{}, ErrProtocol},
		{"", psyncReply{}, ErrProtocol},
		{"$5", psyncReply{}, ErrProtocol},
	} {
		t.Run(tc.line, func(t *testing.T) {
			got, err := parsePSYNCReply([]byte(tc.line))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestScanLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		line string
		n    int
		err  bool
	}{
		{"+OK\r\nrest", "+OK", 5, false},
		{"+OK\nrest", "+OK", 4, false},
		{"\n", "", 1, false},
		{"\r\n", "", 2, false},
		{"+OK\r", "", 0, false},
		{"", "", 0, false},
		{strings.Repeat("x", 11), "", 0, true},
		{strings.Repeat("x", 10) + "\n", strings.Repeat("x", 10), 11, false},
		{strings.Repeat("x", 11) + "\n", "", 0, true},
	} {
		line, n, err := scanLine([]byte(tc.in), 10)
		if (err != nil) != tc.err || n != tc.n || string(line) != tc.line {
			t.Errorf("scanLine(%q) = %q, %d, %v", tc.in, line, n, err)
		}
	}
}

func TestInfoField(t *testing.T) {
	info := []byte("# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\nrun_id_x:no\r\ntcp_port:6379\r\n")
	for name, want := range map[string]string{"run_id": "abc", "tcp_port": "6379", "redis_version": "7.0.15", "missing": ""} {
		if got := infoField(info, name); got != want {
			t.Errorf("infoField(%s) = %q, want %q", name, got, want)
		}
	}
}

func TestPingAccepted(t *testing.T) {
	for reply, want := range map[string]bool{
		"+PONG\r\n":                                true,
		"-NOAUTH Authentication required.\r\n":     true,
		"-NOPERM this user has no permissions\r\n": true,
		"-ERR operation not permitted\r\n":         true,
		"-ERR unknown command\r\n":                 false,
		"-LOADING Redis is loading\r\n":            false,
	} {
		if got := pingAccepted([]byte(reply)); got != want {
			t.Errorf("pingAccepted(%q) = %v", reply, got)
		}
	}
}

// FuzzPSYNCReply drives the PSYNC answer path as the handshake does:
// scanLine over the buffered bytes (skipping keep-alive lines), then
// parsePSYNCReply, and checks that any prefix of the input gives either
// "incomplete" or the same answer.
func FuzzPSYNCReply(f *testing.F) {
	for _, s := range []string{
		"+FULLRESYNC " + testReplID + " 42\r\n$5\r\nhello",
		"\n\n+CONTINUE\r\n*1\r\n$4\r\nPING\r\n",
		"+CONTINUE " + testReplID + "\r\n",
		"-LOADING Redis is loading\r\n",
		"+FULLRESYNC x 1\r\n",
		"\r\n\n\r\n+CONTINUE zz\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, wn, werr := psyncFromBuffer(data)
		for i := 0; i <= len(data); i++ {
			got, n, err := psyncFromBuffer(data[:i])
			if n == 0 && err == nil {
				continue // incomplete
			}
			if n != wn || (err != nil) != (werr != nil) || got != whole {
				t.Fatalf("prefix %d: %+v %d %v; whole: %+v %d %v", i, got, n, err, whole, wn, werr)
			}
		}
		if werr == nil && wn > 0 {
			switch whole.kind {
			case psyncFull:
				if len(whole.replid) != replIDLen || whole.offset < 0 {
					t.Fatalf("bad FULLRESYNC %+v", whole)
				}
			case psyncContinue:
				if whole.replid != "" && len(whole.replid) != replIDLen {
					t.Fatalf("bad CONTINUE %+v", whole)
				}
			default:
				t.Fatalf("no kind: %+v", whole)
			}
			if bytes.IndexByte([]byte(whole.replid), ' ') >= 0 {
				t.Fatalf("space in replid %q", whole.replid)
			}
		}
	})
}

// psyncFromBuffer is the handshake's PSYNC answer loop over a fixed buffer.
func psyncFromBuffer(buf []byte) (psyncReply, int, error) {
	pos := 0
	for {
		line, n, err := scanLine(buf[pos:], maxReplyLineBytes)
		if err != nil {
			return psyncReply{}, pos + 1, err
		}
		if n == 0 {
			return psyncReply{}, 0, nil
		}
		pos += n
		if len(line) == 0 {
			continue
		}
		r, err := parsePSYNCReply(line)
		return r, pos, err
	}
}
