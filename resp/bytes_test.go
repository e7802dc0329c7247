package resp

import (
	"math"
	"strconv"
	"testing"
)

func TestEqualFold(t *testing.T) {
	cases := []struct {
		b, s string
		want bool
	}{
		{"GET", "get", true},
		{"get", "GET", true},
		{"GeT", "gEt", true},
		{"", "", true},
		{"GET", "GETS", false},
		{"GET", "SET", false},
		{"[", "{", false}, // differ only in bit 0x20, but are not letters
		{"@", "`", false},
		{"\xc0", "\xe0", false}, // no Latin-1 folding
		{"multi", "MULTI", true},
		{"CLIENT", "client", true},
	}
	for _, tc := range cases {
		t.Run(tc.b+"/"+tc.s, func(t *testing.T) {
			if got := EqualFold([]byte(tc.b), tc.s); got != tc.want {
				t.Fatalf("EqualFold(%q, %q) = %v", tc.b, tc.s, got)
			}
		})
	}
}

func TestParseInt(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"-1", -1, true},
		{"1234567890", 1234567890, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"-9223372036854775808", math.MinInt64, true},
		{"9223372036854775808", 0, false},
		{"-9223372036854775809", 0, false},
		{"18446744073709551615", 0, false},
		{"18446744073709551616", 0, false},
		{"99999999999999999999", 0, false},
		{"123456789012345678901", 0, false},
		{"", 0, false},
		{"-", 0, false},
		{"+1", 0, false},
		{"-0", 0, false},
		{"00", 0, false},
		{"01", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1a", 0, false},
		{"1.0", 0, false},
		{"0x10", 0, false},
		{"--1", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ParseInt([]byte(tc.in))
			if got != tc.want || ok != tc.ok {
				t.Fatalf("ParseInt(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// ParseInt must agree with strconv wherever string2ll's stricter syntax
// allows the input at all.
func TestParseIntMatchesStrconv(t *testing.T) {
	r := newRand(testSeed(t))
	for i := 0; i < 100000; i++ {
		var v int64
		switch i % 3 {
		case 0:
			v = int64(r.Uint64())
		case 1:
			v = r.Int64N(2000) - 1000
		default:
			v = int64(r.Uint64()) >> r.IntN(64)
		}
		s := strconv.FormatInt(v, 10)
		got, ok := ParseInt([]byte(s))
		if !ok || got != v {
			t.Fatalf("ParseInt(%q) = %d, %v", s, got, ok)
		}
	}
}
