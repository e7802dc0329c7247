package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/replproxy/replproxy/proxy"
)

// bindHardeningFlags adds the flags of listeners, protected mode, hostile
// clients and TLS, named as redis.conf names them where Redis has them.
func bindHardeningFlags(fs *flag.FlagSet, s *settings) {
	fs.Var(&s.ProtectedMode, "protected-mode", "`yes|no`: refuse to start listening on a non-loopback address with no password (as Redis's protected-mode)")
	fs.Var(&s.UnixSocketPerm, "unixsocketperm", "`mode` (octal, e.g. 770) of the unix sockets of --listen unix:/path; 0 = as the umask leaves it")
	fs.Var(&s.AuthTimeout, "auth-timeout", "close a client that has not finished its TLS handshake, or (with a password) not authenticated, this long after connecting (0 = never)")
	fs.Var(&s.ClientOutputBufferLimit, "client-output-buffer-limit", "`class hard soft seconds` (class normal or pubsub; sizes as 32mb; 0 = none), as redis.conf; repeat for both classes")
	fs.Var(&s.TLSListen, "tls-listen", "`address` (host:port) to serve TLS clients on; repeat for several")
	fs.StringVar(&s.TLSCertFile, "tls-cert-file", s.TLSCertFile, "PEM certificate `file` (chain) the proxy presents to TLS clients")
	fs.StringVar(&s.TLSKeyFile, "tls-key-file", s.TLSKeyFile, "PEM private key `file` of --tls-cert-file")
	fs.StringVar(&s.TLSCACertFile, "tls-ca-cert-file", s.TLSCACertFile, "PEM `file` of the CAs client certificates must be signed by")
	fs.StringVar(&s.TLSAuthClients, "tls-auth-clients", s.TLSAuthClients, "client certificates: `yes` (required), optional (checked when given) or no")
	fs.BoolVar(&s.UpstreamTLS, "upstream-tls", s.UpstreamTLS, "connect to every Redis node over TLS (data path, control plane, replication link)")
	fs.StringVar(&s.UpstreamTLSCACertFile, "upstream-tls-ca-cert-file", s.UpstreamTLSCACertFile, "PEM `file` of the CAs the nodes' certificates must be signed by; empty = the system's")
	fs.StringVar(&s.UpstreamTLSCertFile, "upstream-tls-cert-file", s.UpstreamTLSCertFile, "PEM client certificate `file` the proxy presents to the nodes (their tls-auth-clients)")
	fs.StringVar(&s.UpstreamTLSKeyFile, "upstream-tls-key-file", s.UpstreamTLSKeyFile, "PEM private key `file` of --upstream-tls-cert-file")
	fs.StringVar(&s.UpstreamTLSServerName, "upstream-tls-server-name", s.UpstreamTLSServerName, "`name` sent as SNI and checked in the nodes' certificates; empty = each node's host")
	fs.BoolVar(&s.SentinelTLS, "sentinel-tls", s.SentinelTLS, "connect to the Sentinels over TLS, with the --upstream-tls-* files")
}

func (s *settings) validateHardening() error {
	if len(s.Listen) == 0 {
		return errors.New("--listen: at least one address")
	}
	for _, a := range s.Listen {
		if p, ok := strings.CutPrefix(a, "unix:"); ok {
			if p == "" {
				return fmt.Errorf("--listen %q: no socket path after unix:", a)
			}
			continue
		}
		if err := checkAddr(a); err != nil {
			return fmt.Errorf("--listen %q: %v (or unix:/path)", a, err)
		}
	}
	for _, a := range s.TLSListen {
		if err := checkAddr(a); err != nil {
			return fmt.Errorf("--tls-listen %q: %v", a, err)
		}
	}
	if s.AuthTimeout < 0 {
		return errors.New("--auth-timeout must not be negative")
	}
	switch s.TLSAuthClients {
	case "yes", "optional", "no":
	default:
		return fmt.Errorf("--tls-auth-clients %q: must be yes, optional or no", s.TLSAuthClients)
	}
	if len(s.TLSListen) > 0 {
		if s.TLSCertFile == "" || s.TLSKeyFile == "" {
			return errors.New("--tls-listen needs --tls-cert-file and --tls-key-file")
		}
		if s.TLSAuthClients != "no" && s.TLSCACertFile == "" {
			return fmt.Errorf("--tls-auth-clients %s needs --tls-ca-cert-file (or --tls-auth-clients no)", s.TLSAuthClients)
		}
	}
	if (s.UpstreamTLSCertFile == "") != (s.UpstreamTLSKeyFile == "") {
		return errors.New("--upstream-tls-cert-file and --upstream-tls-key-file go together")
	}
	return nil
}

// hardeningConfig copies the hardening settings into cfg (the TLS
// configurations come from loadTLS, which reads files).
func (s *settings) hardeningConfig(cfg *proxy.Config) {
	cfg.ListenAddrs = slices.Clone([]string(s.Listen))
	protected := bool(s.ProtectedMode)
	cfg.ProtectedMode = &protected
	cfg.UnixSocketPerm = os.FileMode(s.UnixSocketPerm)
	cfg.AuthTimeout = time.Duration(s.AuthTimeout)
	if cfg.AuthTimeout == 0 {
		cfg.AuthTimeout = -1 // --auth-timeout 0 means never; proxy.Config's 0 means the default
	}
	cfg.ClientOutputBufferLimits = map[string]proxy.OutputLimit(s.ClientOutputBufferLimit.clone())
	cfg.TLSListen = slices.Clone([]string(s.TLSListen))
}

// replaceList is a repeatable flag whose first use on the command line
// replaces the default instead of adding to it (--listen).
type replaceList struct {
	dst *stringList
	set bool
}

func (r *replaceList) String() string {
	if r.dst == nil {
		return ""
	}
	return r.dst.String()
}

func (r *replaceList) Set(v string) error {
	if !r.set {
		*r.dst, r.set = nil, true
	}
	return r.dst.Set(v)
}

// yesNo is a boolean written as redis.conf writes them (yes/no), or
// true/false.
type yesNo bool

func (b yesNo) String() string {
	if b {
		return "yes"
	}
	return "no"
}

func (b *yesNo) Set(v string) error {
	switch strings.ToLower(v) {
	case "yes", "true":
		*b = true
	case "no", "false":
		*b = false
	default:
		return errors.New("want yes or no")
	}
	return nil
}

func (b *yesNo) UnmarshalYAML(n *yaml.Node) error { return scalarYAML(n, "yes or no", b.Set) }

// fileMode is a permission written in octal, as unixsocketperm.
type fileMode os.FileMode

func (m fileMode) String() string { return strconv.FormatUint(uint64(m), 8) }

func (m *fileMode) Set(v string) error {
	n, err := strconv.ParseUint(v, 8, 32)
	if err != nil || n > 0o777 {
		return errors.New("want an octal mode such as 700 or 770")
	}
	*m = fileMode(n)
	return nil
}

func (m *fileMode) UnmarshalYAML(n *yaml.Node) error {
	return scalarYAML(n, "an octal mode such as 770", m.Set)
}

// outputLimits is client-output-buffer-limit: "class hard soft seconds",
// one or more groups per value (CONFIG SET's form), classes given later
// replacing earlier ones. In YAML a string or a list of strings.
type outputLimits map[string]proxy.OutputLimit

func (o *outputLimits) String() string {
	if o == nil {
		return ""
	}
	return proxy.FormatOutputLimits(*o)
}

func (o *outputLimits) Set(v string) error {
	f := strings.Fields(v)
	if len(f) == 0 || len(f)%4 != 0 {
		return errors.New("want class hard soft seconds, e.g. pubsub 32mb 8mb 60")
	}
	parsed := outputLimits{}
	for i := 0; i < len(f); i += 4 {
		class := strings.ToLower(f[i])
		if class != "normal" && class != "pubsub" {
			return fmt.Errorf("class %q: want normal or pubsub (replicas never connect to the proxy)", f[i])
		}
		hard, err := parseSize(f[i+1])
		if err != nil {
			return fmt.Errorf("hard limit %q: %v", f[i+1], err)
		}
		soft, err := parseSize(f[i+2])
		if err != nil {
			return fmt.Errorf("soft limit %q: %v", f[i+2], err)
		}
		secs, err := strconv.ParseInt(f[i+3], 10, 32)
		if err != nil || secs < 0 {
			return fmt.Errorf("seconds %q: want a whole number of seconds", f[i+3])
		}
		parsed[class] = proxy.OutputLimit{HardBytes: hard, SoftBytes: soft, SoftFor: time.Duration(secs) * time.Second}
	}
	next := o.clone()
	for k, v := range parsed {
		next[k] = v
	}
	*o = next
	return nil
}

func (o *outputLimits) UnmarshalYAML(n *yaml.Node) error {
	var values []string
	switch n.Kind {
	case yaml.ScalarNode:
		values = []string{n.Value}
	case yaml.SequenceNode:
		if err := n.Decode(&values); err != nil {
			return err
		}
	default:
		return fmt.Errorf("line %d: want \"class hard soft seconds\" or a list of them", n.Line)
	}
	for _, v := range values {
		if err := o.Set(v); err != nil {
			return fmt.Errorf("line %d: %q: %v", n.Line, v, err)
		}
	}
	return nil
}

// clone copies the map: the defaults, the file and the command line each
// build their own.
func (o *outputLimits) clone() outputLimits {
	out := outputLimits{}
	if o != nil {
		for k, v := range *o {
			out[k] = v
		}
	}
	return out
}
