package deploy_test

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

const dockerfile = "Dockerfile"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// parseDockerfile splits a Dockerfile into instructions: enough of the
// syntax for our file (comments, blank lines, backslash continuations), and
// an error for anything else rather than a guess.
func parseDockerfile(path string) ([]instruction, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []instruction
	var cur *instruction
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur == nil) {
			continue
		}
		cont := strings.HasSuffix(line, "\\")
		line = strings.TrimSpace(strings.TrimSuffix(line, "\\"))
		if cur == nil {
			cmd, args, _ := strings.Cut(line, " ")
			out = append(out, instruction{line: n, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
			cur = &out[len(out)-1]
		} else {
			cur.args += " " + line
		}
		if !cont {
			cur = nil
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: the last instruction ends with a continuation", path)
	}
	return out, sc.Err()
}

// stage is one FROM ... and the instructions until the next FROM.
type stage struct {
	from, name string
	ins        []instruction
}

func stages(ins []instruction) (args []instruction, st []stage) {
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			st = append(st, s)
			continue
		}
		if len(st) == 0 {
			args = append(args, in)
			continue
		}
		st[len(st)-1].ins = append(st[len(st)-1].ins, in)
	}
	return args, st
}

func (s stage) find(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm parses an exec-form (JSON array) argument.
func execForm(t testing.TB, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Fatalf("Dockerfile line %d: %s %s: want the exec (JSON) form: %v", in.line, in.cmd, in.args, err)
	}
	return v
}

// imageBinary is replproxy built by the Dockerfile's own build command,
// once per test binary; the live tests run it.
var imageBinary struct {
	once    sync.Once
	path    string
	version string
	err     error
}

const testVersion = "deploytest-1"

// buildImageBinary runs the build stage's `go build` RUN line itself, with
// the stage's ENV, from the repository root, writing to a temporary
// directory instead of /out: the binary the image would hold.
func buildImageBinary(t testing.TB) string {
	t.Helper()
	imageBinary.once.Do(func() {
		imageBinary.path, imageBinary.err = buildFromDockerfile()
	})
	if imageBinary.err != nil {
		t.Fatalf("building replproxy as deploy/Dockerfile does: %v", imageBinary.err)
	}
	return imageBinary.path
}

func buildFromDockerfile() (string, error) {
	ins, err := parseDockerfile(dockerfile)
	if err != nil {
		return "", err
	}
	_, st := stages(ins)
	if len(st) == 0 {
		return "", errors.New("no FROM")
	}
	build := st[0]
	env := []string{}
	for _, in := range build.find("ENV") {
		for _, kv := range strings.Fields(in.args) {
			if !strings.Contains(kv, "=") {
				return "", fmt.Errorf("line %d: ENV %s: write ENV key=value", in.line, in.args)
			}
			env = append(env, kv)
		}
	}
	var run string
	for _, in := range build.find("RUN") {
		if strings.Contains(in.args, "go build") {
			run = in.args
		}
	}
	if run == "" {
		return "", errors.New("the build stage has no RUN go build")
	}
	dir, err := os.MkdirTemp("", "replproxy-deploytest-")
	if err != nil {
		return "", err
	}
	// Removed by TestMain.
	binDirs = append(binDirs, dir)
	out := filepath.Join(dir, "replproxy")
	const dest = " -o /out/replproxy "
	if !strings.Contains(run, dest) {
		return "", fmt.Errorf("RUN %s: want %q, which the runtime stage copies", run, strings.TrimSpace(dest))
	}
	run = strings.Replace(run, dest, " -o '"+out+"' ", 1)
	cmd := exec.Command("sh", "-c", run)
	cmd.Dir = ".."
	cmd.Env = append(append(os.Environ(), env...), "VERSION="+testVersion)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %v\n%s", run, err, b)
	}
	return out, nil
}

var binDirs []string

// moduleStep copies what the build stage COPYs before its RUN go mod
// download into an empty directory, as the image build's layer has it,
// and runs the download there.
func moduleStep(build stage) error {
	dir, err := os.MkdirTemp("", "replproxy-modstep-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, in := range build.ins {
		switch {
		case in.cmd == "COPY" && !strings.HasPrefix(in.args, "--from="):
			f := strings.Fields(in.args)
			if len(f) < 2 || f[len(f)-1] == "." {
				return fmt.Errorf("line %d: COPY %s before RUN go mod download: want files, not the whole context", in.line, in.args)
			}
			dst := filepath.Join(dir, f[len(f)-1])
			for _, src := range f[:len(f)-1] {
				b, err := os.ReadFile(filepath.Join("..", src))
				if err != nil {
					return fmt.Errorf("line %d: %v", in.line, err)
				}
				to := dst
				if strings.HasSuffix(f[len(f)-1], "/") {
					to = filepath.Join(dst, filepath.Base(src))
				}
				if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(to, b, 0o644); err != nil {
					return err
				}
			}
		case in.cmd == "RUN" && strings.Contains(in.args, "go mod download"):
			cmd := exec.Command("sh", "-c", in.args)
			cmd.Dir = dir
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("line %d: RUN %s, with only the files COPYed before it: %v\n%s", in.line, in.args, err, b)
			}
			return nil
		}
	}
	return errors.New("the build stage has no RUN go mod download")
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range binDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

func TestDockerfile(t *testing.T) {
	ins, err := parseDockerfile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	_, st := stages(ins)
	if len(st) != 2 {
		t.Fatalf("%d stages, want 2 (build, runtime)", len(st))
	}
	build, rt := st[0], st[1]
	if !strings.HasPrefix(build.from, "golang:") || build.name == "" {
		t.Errorf("build stage FROM %s AS %q: want a golang image, named", build.from, build.name)
	}
	if !slices.ContainsFunc(build.find("ENV"), func(in instruction) bool { return strings.Contains(in.args, "CGO_ENABLED=0") }) {
		t.Errorf("build stage does not set CGO_ENABLED=0")
	}
	if !slices.ContainsFunc(build.find("ARG"), func(in instruction) bool { return strings.HasPrefix(in.args, "VERSION") }) {
		t.Errorf("build stage has no ARG VERSION")
	}

	// busybox, because the HEALTHCHECK runs wget.
	if !strings.HasPrefix(rt.from, "busybox:") {
		t.Errorf("runtime FROM %s: the HEALTHCHECK needs wget (busybox has it)", rt.from)
	}
	var entry, cmd, health []string
	var user, binDest string
	var exposed []string
	for _, in := range rt.ins {
		switch in.cmd {
		case "ENTRYPOINT":
			entry = execForm(t, in)
		case "CMD":
			cmd = execForm(t, in)
		case "HEALTHCHECK":
			_, after, ok := strings.Cut(in.args, " CMD ")
			if !ok {
				t.Fatalf("line %d: HEALTHCHECK without CMD", in.line)
			}
			health = execForm(t, instruction{line: in.line, cmd: "HEALTHCHECK CMD", args: strings.TrimSpace(after)})
		case "USER":
			user = in.args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) == 3 && f[0] == "--from="+build.name && f[1] == "/out/replproxy" {
				binDest = f[2]
			}
		}
	}
	if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") {
		t.Errorf("USER %q: the runtime image must not run as root", user)
	}
	for _, port := range []string{"6380", "9121"} {
		if !slices.Contains(exposed, port) {
			t.Errorf("EXPOSE %v lacks %s", exposed, port)
		}
	}
	if binDest == "" || !slices.Equal(entry, []string{binDest}) {
		t.Errorf("ENTRYPOINT %q, binary copied to %q", entry, binDest)
	}
	if len(health) == 0 || health[0] != "wget" || !strings.Contains(strings.Join(health, " "), "http://127.0.0.1:9121/readyz") {
		t.Errorf("HEALTHCHECK CMD %q: want wget of http://127.0.0.1:9121/readyz", health)
	}

	// The Compose file's health check is the image's, and its config mount
	// is where CMD looks.
	p := loadCompose(t)
	rp := service(t, p, "replproxy")
	if rp.HealthCheck == nil || !slices.Equal([]string(rp.HealthCheck.Test), append([]string{"CMD"}, health...)) {
		t.Errorf("compose health check %v differs from the image's %q", rp.HealthCheck, health)
	}
	if len(cmd) != 2 || cmd[0] != "--config" || hostPath(rp, cmd[1]) == "" {
		t.Errorf("CMD %q: want --config at the path Compose mounts the config", cmd)
	}

	// The build context leaves out nothing the build needs: go.mod, go.sum
	// and the directory of every package of this module the binary uses.
	ign, err := os.ReadFile(dockerfile + ".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-deps", "-f", "{{.Dir}}", "./cmd/replproxy")
	list.Dir = root
	dirs, err := list.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/replproxy: %v", err)
	}
	need := []string{"go.mod", "go.sum"}
	for _, d := range strings.Fields(string(dirs)) {
		if rel, err := filepath.Rel(root, d); err == nil && !strings.HasPrefix(rel, "..") {
			need = append(need, filepath.ToSlash(rel)+"/")
		}
	}
	if len(need) < 4 {
		t.Fatalf("go list found only %v in this module", need)
	}
	for _, line := range strings.Split(string(ign), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pat := strings.TrimSuffix(line, "/")
		for _, n := range need {
			if n == pat || strings.HasPrefix(n, pat+"/") {
				t.Errorf("%s.dockerignore: %q excludes %s, which the build needs", dockerfile, line, n)
			}
		}
	}

	// The module step sees only what is copied before it: go.mod, go.sum
	// and the go.mod of every directory go.mod replaces a module with.
	if err := moduleStep(build); err != nil {
		t.Error(err)
	}

	// The build command itself: a static binary stamped with the version.
	bin := buildImageBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("the binary has an ELF interpreter: not static (CGO_ENABLED=0 not in effect?)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "replproxy "+testVersion {
		t.Errorf("--version: %q, %v; want %q (the VERSION build arg)", out, err, "replproxy "+testVersion)
	}
}

var flagToken = regexp.MustCompile(`^--([a-z][a-z0-9-]*)(=.*)?$`)

// TestDeployFlags checks every flag the deployment files give replproxy
// exists (in --help), and that the mounted config file is one the binary
// accepts.
func TestDeployFlags(t *testing.T) {
	bin := buildImageBinary(t)
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, help)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(help), -1) {
		known[m[1]] = true
	}
	if !known["sentinel"] || !known["config"] {
		t.Fatalf("--help lists no --sentinel or --config:\n%s", help)
	}
	check := func(where string, args []string) {
		t.Helper()
		n := 0
		for _, a := range args {
			if m := flagToken.FindStringSubmatch(a); m != nil {
				n++
				if !known[m[1]] {
					t.Errorf("%s: replproxy has no flag --%s", where, m[1])
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no flag found in %q", where, args)
		}
	}

	p := loadCompose(t)
	check("docker-compose.yml replproxy command", service(t, p, "replproxy").Command)

	unit, err := os.ReadFile("replproxy.service")
	if err != nil {
		t.Fatal(err)
	}
	var execStart []string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
	}
	check("replproxy.service ExecStart", execStart)

	k8s := kubernetesProxyContainer(t)
	check("kubernetes/replproxy-sidecar.yaml args", k8s.Args)

	// The config file the stack mounts: every key a flag, every value
	// valid. --master is only there because this binary still needs one
	// for validation when no Sentinel is given (the file leaves where Redis
	// is to the command line); --version exits after validating.
	cfg := hostPath(service(t, p, "replproxy"), "/etc/replproxy/replproxy.yaml")
	out, err := exec.Command(bin, "--config", cfg, "--master", "127.0.0.1:6379", "--version").CombinedOutput()
	if err != nil {
		t.Errorf("replproxy rejects %s: %v\n%s", cfg, err, out)
	}
}

type k8sContainer struct {
	Name           string   `yaml:"name"`
	Image          string   `yaml:"image"`
	Args           []string `yaml:"args"`
	ReadinessProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	SecurityContext struct {
		RunAsNonRoot           bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
}

func kubernetesDeployment(t testing.TB) (containers []k8sContainer) {
	t.Helper()
	b, err := os.ReadFile("kubernetes/replproxy-sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Spec struct {
					Containers []k8sContainer `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(false)
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("kubernetes/replproxy-sidecar.yaml: %v", err)
	}
	if d.Kind != "Deployment" {
		t.Fatalf("kubernetes/replproxy-sidecar.yaml: kind %q", d.Kind)
	}
	return d.Spec.Template.Spec.Containers
}

func kubernetesProxyContainer(t testing.TB) k8sContainer {
	t.Helper()
	for _, c := range kubernetesDeployment(t) {
		if c.Name == "replproxy" {
			return c
		}
	}
	t.Fatalf("kubernetes/replproxy-sidecar.yaml: no replproxy container")
	return k8sContainer{}
}

func TestKubernetesSidecar(t *testing.T) {
	cs := kubernetesDeployment(t)
	if len(cs) != 2 {
		t.Fatalf("%d containers, want the app and replproxy", len(cs))
	}
	rp := kubernetesProxyContainer(t)
	if rp.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe path %q, want /readyz", rp.ReadinessProbe.HTTPGet.Path)
	}
	if !slices.ContainsFunc(rp.Ports, func(p struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	}) bool {
		return p.ContainerPort == 9121 && p.Name == rp.ReadinessProbe.HTTPGet.Port
	}) {
		t.Errorf("the readiness probe's port %v is not the metrics port 9121", rp.ReadinessProbe.HTTPGet.Port)
	}
	if !rp.SecurityContext.RunAsNonRoot || !rp.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("replproxy container: want runAsNonRoot and readOnlyRootFilesystem")
	}
	if !slices.ContainsFunc(rp.VolumeMounts, func(v struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	}) bool {
		return v.MountPath == "/etc/replproxy"
	}) || !slices.Contains(rp.Args, "/etc/replproxy/replproxy.yaml") {
		t.Errorf("the config is not mounted where --config reads it")
	}
	for _, c := range cs {
		if c.Name == "replproxy" {
			continue
		}
		if len(c.Env) == 0 || c.Env[0].Value != "127.0.0.1:6380" {
			t.Errorf("app container %s is not pointed at 127.0.0.1:6380: %+v", c.Name, c.Env)
		}
	}
}

// TestSystemdUnit runs systemd-analyze verify on the unit, with only the
// binary path pointed at a real executable (verify insists it exists), and
// fails on any word it says: unknown keys are only warnings to it.
func TestSystemdUnit(t *testing.T) {
	sa := needProgram(t, "systemd-analyze", "systemd")
	b, err := os.ReadFile("replproxy.service")
	if err != nil {
		t.Fatal(err)
	}
	const binPath = "ExecStart=/usr/local/bin/replproxy "
	if !strings.Contains(string(b), binPath) {
		t.Fatalf("replproxy.service: no %q", binPath)
	}
	bin := buildImageBinary(t)
	unit := strings.Replace(string(b), binPath, "ExecStart="+bin+" ", 1)
	path := filepath.Join(t.TempDir(), "replproxy.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, key := range []string{
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"DynamicUser=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=", "SystemCallFilter=@system-service",
		"RestartPreventExitStatus=2",
	} {
		if !strings.Contains(string(b), "\n"+key) {
			t.Errorf("replproxy.service lacks %q", strings.TrimSpace(key))
		}
	}
}
