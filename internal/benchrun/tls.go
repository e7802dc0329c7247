package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/replproxy/replproxy/internal/redistest"
)

// TLS rows measure the proxy's client-side TLS (the relay of proxy/tls.go)
// against its own plaintext listener: the "direct" run of a TLS row goes
// to the same proxy's --listen, the "proxy" run to its --tls-listen with
// redis-benchmark --tls. DESIGN.md / issue 15 target: TLS P16 ≥ 0.8× plain.

// benchPKI is the throwaway PKI of the TLS rows, made on first use.
var benchPKI *redistest.TLS

// tlsRow is a matrix row measured over TLS against plaintext.
func tlsRow(test string, pipeline, requests int, minRatio float64) scenario {
	s := matrixRow(test, pipeline, 3, requests, minRatio, 0)
	s.name = fmt.Sprintf("%s-p%d-tls-vs-plain", test, pipeline)
	s.tls = true
	s.proxyArgs = tlsProxyArgs
	return s
}

// tlsProxyArgs gives the proxy a TLS listener on a free port, with no
// client certificates asked (redis-benchmark can present one, but the
// handshake cost is per connection, not per request).
func tlsProxyArgs(*redistest.Topology) []string {
	port, err := freePort()
	if err != nil {
		panic(fmt.Sprintf("free port for the TLS listener: %v", err))
	}
	return []string{
		"--tls-listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--tls-cert-file", benchPKI.CertFile, "--tls-key-file", benchPKI.KeyFile,
		"--tls-auth-clients", "no",
	}
}

// tlsAddrOf returns the --tls-listen address among a proxy's arguments.
func tlsAddrOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--tls-listen" {
			return args[i+1]
		}
	}
	return ""
}

// tlsBenchArgs make redis-benchmark a TLS client trusting the PKI's CA.
func tlsBenchArgs() []string {
	return []string{"--tls", "--cacert", benchPKI.CAFile, "--sni", "localhost"}
}

// tlsReference runs a TLS row's load against the master itself, plaintext
// then TLS: what TLS costs this client against Redis, for comparison.
func tlsReference(h *harness, r *row, plain, overTLS scenario, wrap []string, master, masterTLS string, seed uint64) string {
	p, err := plain.run(wrap, master, r.requests, seed)
	if err != nil {
		h.Fatalf("plaintext run against the master: %v", err)
	}
	t, err := overTLS.run(wrap, masterTLS, r.requests, seed)
	if err != nil {
		h.Fatalf("TLS run against the master: %v", err)
	}
	r.redisPlain, r.redisTLS = append(r.redisPlain, p), append(r.redisTLS, t)
	return fmt.Sprintf("; Redis itself TLS/plaintext %.2f", t.rps/p.rps)
}

// printTLS compares, for the TLS rows, the proxy's CPU per request over TLS
// with its CPU over plaintext in the same rounds: on a loaded machine the
// throughput ratio moves with the neighbours, the CPU cost much less.
func printTLS(rows []*row) {
	header := false
	for _, r := range rows {
		if !r.sc.tls {
			continue
		}
		if !header {
			fmt.Println("\nclient TLS (proxy CPU µs/req, medians; the throughput ratio is in the table above):")
			header = true
		}
		plain := median(collect(r.direct, func(b benchResult) float64 { return b.cpuUsPerReq }))
		tls := median(collect(r.proxy, func(b benchResult) float64 { return b.cpuUsPerReq }))
		// With redis-benchmark on the proxy's CPU, a TLS row's throughput
		// ratio carries the client's TLS too. Per request, CPU 1 spends the
		// client's CPU plus the proxy's: a proxy whose TLS cost nothing
		// would make the row's ratio (client + proxy, plaintext) over
		// (client over TLS + proxy plaintext), and no more.
		extra := ""
		cp := median(collect(r.direct, func(b benchResult) float64 { return clientUs(b, r.requests) }))
		ct := median(collect(r.proxy, func(b benchResult) float64 { return clientUs(b, r.requests) }))
		if cp > 0 && ct > 0 {
			extra += fmt.Sprintf("; client CPU plaintext %s, TLS %s µs/req: a proxy with free TLS would reach %s; the proxy alone (its plaintext CPU over its TLS CPU) %s",
				fmtFloat(cp, 2), fmtFloat(ct, 2), fmtFloat((cp+plain)/(ct+plain), 2), fmtFloat(plain/tls, 2))
		}
		if len(r.redisTLS) > 0 {
			rp := median(collect(r.redisPlain, func(b benchResult) float64 { return b.rps }))
			rt := median(collect(r.redisTLS, func(b benchResult) float64 { return b.rps }))
			extra += fmt.Sprintf("; against Redis itself TLS/plaintext %s", fmtFloat(rt/rp, 2))
		}
		fmt.Printf("  %s: plaintext %s, TLS %s (%s×)%s\n", r.sc.name, fmtFloat(plain, 2), fmtFloat(tls, 2), fmtFloat(tls/plain, 2), extra)
	}
}

// clientUs is redis-benchmark's CPU per request in a run, 0 if unknown.
func clientUs(b benchResult, requests int) float64 {
	return float64(b.clientCPU.Microseconds()) / float64(requests)
}
