package resp

import (
	"bytes"
	"testing"
)

func benchParse(b *testing.B, buf []byte) {
	p := NewRequestParser(Limits{})
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		in := buf
		for len(in) > 0 {
			_, n, err := p.Parse(in)
			if n == 0 || err != nil {
				b.Fatalf("n=%d err=%v", n, err)
			}
			in = in[n:]
		}
	}
}

func BenchmarkParseMultibulkGET(b *testing.B) {
	benchParse(b, AppendCommandStrings(nil, "GET", "key:000000000042"))
}

func BenchmarkParseMultibulkSET(b *testing.B) {
	b.Run("3B", func(b *testing.B) {
		benchParse(b, AppendCommandStrings(nil, "SET", "key:000000000042", "xxx"))
	})
	b.Run("1KiB", func(b *testing.B) {
		benchParse(b, AppendCommand(nil, []byte("SET"), []byte("key:000000000042"), bytes.Repeat([]byte{'x'}, 1024)))
	})
}

func BenchmarkParsePipeline16(b *testing.B) {
	var buf []byte
	for i := 0; i < 16; i++ {
		if i%2 == 0 {
			buf = AppendCommandStrings(buf, "SET", "key:000000000042", "xxx")
		} else {
			buf = AppendCommandStrings(buf, "GET", "key:000000000042")
		}
	}
	benchParse(b, buf)
}

func BenchmarkParseInline(b *testing.B) {
	benchParse(b, []byte("SET key:000000000042 xxx\r\n"))
}

func benchScan(b *testing.B, buf []byte) {
	s := NewReplyScanner(Limits{})
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if n, err := s.Scan(buf); n != len(buf) || err != nil {
			b.Fatalf("n=%d err=%v", n, err)
		}
	}
}

func BenchmarkScanReplyBulk(b *testing.B) {
	b.Run("3B", func(b *testing.B) { benchScan(b, AppendBulkString(nil, "xxx")) })
	b.Run("1KiB", func(b *testing.B) { benchScan(b, AppendBulk(nil, bytes.Repeat([]byte{'x'}, 1024))) })
}

func BenchmarkScanReplyArray(b *testing.B) {
	// An LRANGE-like reply of 100 short bulks, and an HGETALL-like RESP3 map.
	buf := AppendArrayHeader(nil, 100)
	for i := 0; i < 100; i++ {
		buf = AppendBulkString(buf, "element-000000")
	}
	b.Run("array100", func(b *testing.B) { benchScan(b, buf) })
	m := AppendMapHeader(nil, 10, 3)
	for i := 0; i < 10; i++ {
		m = AppendBulkString(m, "field")
		m = AppendInt(m, int64(i))
	}
	b.Run("map10", func(b *testing.B) { benchScan(b, m) })
}

func BenchmarkScanReplySimple(b *testing.B) {
	benchScan(b, []byte("+OK\r\n"))
}

func BenchmarkAppendCommand(b *testing.B) {
	args := [][]byte{[]byte("SET"), []byte("key:000000000042"), []byte("xxx")}
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(AppendCommand(nil, args...))))
	for b.Loop() {
		dst = AppendCommand(dst[:0], args...)
	}
}

func BenchmarkAppendBulk(b *testing.B) {
	v := bytes.Repeat([]byte{'x'}, 1024)
	dst := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(AppendBulk(nil, v))))
	for b.Loop() {
		dst = AppendBulk(dst[:0], v)
	}
}
