// Command composecheck validates a Compose file offline, the way `docker compose config` would, without a
// Docker engine: it loads the file with compose-go (the reference implementation of the Compose
// Specification), which validates it against the specification's JSON schema, interpolates variables,
// normalizes it and checks its consistency (depends_on, volumes, networks, healthchecks...). It then checks
// what compose-go leaves to the engine: that local build contexts and their Dockerfiles, bind-mount sources
// and env_files exist.
//
// On success it prints the resolved project as JSON on stdout (for further policy checks) and exits 0.
// On failure it prints every problem found on stderr and exits 1. Usage errors exit 2.
//
// The environment used for interpolation is only what -env-file and -env give, never the caller's
// environment, so the result does not depend on the machine: by default it shows what `docker compose`
// does on a machine with no .env file and no variables set.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

type config struct {
	file     string
	envFiles stringList
	env      stringList
	profiles stringList
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return 2
	}
	project, err := load(context.Background(), cfg)
	if err != nil {
		fmt.Fprintf(stderr, "composecheck: %s: invalid: %v\n", cfg.file, err)
		return 1
	}
	if problems := checkPaths(project); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "composecheck: %s: %s\n", cfg.file, p)
		}
		return 1
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Fprintf(stderr, "composecheck: cannot render the project as JSON: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(append(out, '\n')); err != nil {
		return 1
	}
	return 0
}

func parseArgs(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("composecheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.file, "f", "docker-compose.yml", "Compose file to check")
	fs.Var(&cfg.envFiles, "env-file", "env file for interpolation, like `docker compose --env-file` (repeatable)")
	fs.Var(&cfg.env, "env", "KEY=VALUE for interpolation, wins over -env-file (repeatable)")
	fs.Var(&cfg.profiles, "profile", "profile to enable (repeatable; default: every profile, \"*\")")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "composecheck: unexpected arguments: %v\n", fs.Args())
		return cfg, errors.New("unexpected arguments")
	}
	if len(cfg.profiles) == 0 {
		cfg.profiles = stringList{"*"}
	}
	return cfg, nil
}

// load reads, validates, interpolates, normalizes and consistency-checks the Compose file.
func load(ctx context.Context, cfg config) (*types.Project, error) {
	abs, err := filepath.Abs(cfg.file)
	if err != nil {
		return nil, err
	}
	opts := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
		cli.WithProfiles(cfg.profiles),
	}
	if len(cfg.envFiles) > 0 {
		// WithEnvFiles with no file would pick up ./.env: only read env files that were asked for.
		opts = append(opts, cli.WithEnvFiles(cfg.envFiles...), cli.WithDotEnv)
	}
	opts = append(opts, cli.WithEnv(cfg.env))
	options, err := cli.NewProjectOptions([]string{abs}, opts...)
	if err != nil {
		return nil, err
	}
	return options.LoadProject(ctx)
}

// checkPaths reports the local files a service needs that do not exist: build contexts, Dockerfiles,
// bind-mount sources and env files. compose-go resolves these paths but leaves their existence to the engine.
func checkPaths(project *types.Project) []string {
	var problems []string
	names := make([]string, 0, len(project.Services))
	for name := range project.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		problems = append(problems, checkService(project.Services[name])...)
	}
	return problems
}

func checkService(s types.ServiceConfig) []string {
	var problems []string
	missing := func(what, path string, wantDir bool) {
		info, err := os.Stat(path)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("service %q: %s %s does not exist", s.Name, what, path))
		case wantDir && !info.IsDir():
			problems = append(problems, fmt.Sprintf("service %q: %s %s is not a directory", s.Name, what, path))
		case !wantDir && info.IsDir():
			problems = append(problems, fmt.Sprintf("service %q: %s %s is a directory", s.Name, what, path))
		}
	}
	if b := s.Build; b != nil && isLocal(b.Context) {
		missing("build context", b.Context, true)
		if b.DockerfileInline == "" {
			dockerfile := b.Dockerfile
			if dockerfile == "" {
				dockerfile = "Dockerfile"
			}
			if !filepath.IsAbs(dockerfile) {
				dockerfile = filepath.Join(b.Context, dockerfile)
			}
			missing("Dockerfile", dockerfile, false)
		}
	}
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			if info, err := os.Stat(v.Source); err != nil {
				problems = append(problems, fmt.Sprintf("service %q: bind-mount source %s does not exist", s.Name, v.Source))
			} else if !info.IsDir() && !info.Mode().IsRegular() {
				problems = append(problems, fmt.Sprintf("service %q: bind-mount source %s is not a file or directory", s.Name, v.Source))
			}
		}
	}
	for _, e := range s.EnvFiles {
		missing("env_file", e.Path, false)
	}
	return problems
}

// isLocal tells a local build context from a remote one (git URL, http(s) tarball, another service...).
func isLocal(context string) bool {
	if context == "" {
		return false
	}
	for _, prefix := range []string{"http://", "https://", "git://", "git@", "github.com/", "ssh://", types.ServicePrefix, "docker-image://", "oci-layout://"} {
		if strings.HasPrefix(context, prefix) {
			return false
		}
	}
	return true
}
