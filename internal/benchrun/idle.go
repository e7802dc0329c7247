package main

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
)

// idleClients is DESIGN.md's "≤ 100 MB RSS with 10,000 idle clients", and
// issue 14's "a client connecting then gets its first reply as fast as with
// 10 connections".
const (
	idleClients   = 10_000
	idleFewer     = 10
	idleMaxRSSMB  = 100
	firstReplies  = 300 // new clients timed at each count
	idleDialLimit = 30 * time.Second
)

// measureIdle starts a proxy of its own, holds idle client connections
// open on it (each has had one PING answered, so its session exists), and
// reports the proxy's RSS and how long a new client takes from dial to its
// first reply, at idleFewer and at idleClients connections.
func measureIdle(h *harness, bin string, wrapper []string, master string) {
	fmt.Printf("\nidle clients (DESIGN.md: ≤ %d MB RSS with %d idle; a new client's first reply as fast as with %d):\n", idleMaxRSSMB, idleClients, idleFewer)
	p := startProxy(h, bin, wrapper, master, []string{"--maxclients", strconv.Itoa(idleClients + firstReplies + 100)})
	defer p.stop()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	baseRSS, _ := rssKiB(p.pid())
	fmt.Printf("  0 clients: RSS %.1f MB\n", float64(baseRSS)/1024)
	deadline := time.Now().Add(idleDialLimit)
	for _, n := range []int{idleFewer, idleClients} {
		for len(conns) < n {
			c, err := pingedConn(p.addr)
			if err != nil {
				fmt.Printf("  stopped at %d clients: %v\n", len(conns), err)
				return
			}
			conns = append(conns, c)
			if time.Now().After(deadline) {
				fmt.Printf("  stopped at %d clients: dialing took over %v\n", len(conns), idleDialLimit)
				return
			}
		}
		time.Sleep(200 * time.Millisecond) // let the proxy settle (GC, buffers)
		rss, err := rssKiB(p.pid())
		if err != nil {
			fmt.Printf("  %d clients: RSS: %v\n", n, err)
			continue
		}
		lat := make([]float64, 0, firstReplies)
		for range firstReplies {
			start := time.Now()
			c, err := pingedConn(p.addr)
			if err != nil {
				fmt.Printf("  %d clients: a new client failed: %v\n", n, err)
				return
			}
			lat = append(lat, float64(time.Since(start).Microseconds()))
			c.Close()
		}
		slices.Sort(lat)
		mb := float64(rss) / 1024
		rssTarget := "-"
		if n == idleClients {
			rssTarget = target("≤", idleMaxRSSMB, mb, mb <= idleMaxRSSMB)
		}
		fmt.Printf("  %5d clients: RSS %6.1f MB (%s), %.1f KiB per client over none; new client dial to first reply p50 %.0f µs, p90 %.0f µs\n",
			n, mb, rssTarget, float64(rss-baseRSS)/float64(n), lat[len(lat)/2], lat[len(lat)*9/10])
	}
}

// pingedConn dials addr and has one PING answered on the connection.
func pingedConn(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		c.Close()
		return nil, err
	}
	got := 0
	for got < len("+PONG\r\n") {
		n, err := c.Read(buf[got:])
		if err != nil {
			c.Close()
			return nil, err
		}
		got += n
	}
	if string(buf[:got]) != "+PONG\r\n" {
		c.Close()
		return nil, fmt.Errorf("PING answered %q", buf[:got])
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
