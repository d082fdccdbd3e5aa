package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// write creates the files of a small project in a temporary directory and returns the compose file's path.
func write(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "compose.yml")
}

func check(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

const valid = `
services:
  app:
    build: ./app
    env_file: app.env
    environment:
      PASSWORD: ${PASSWORD:-dev}
    volumes:
      - ./app/config.txt:/config.txt:ro
    depends_on:
      db:
        condition: service_healthy
  db:
    image: mysql:8.4.11
    healthcheck:
      test: ["CMD", "true"]
    profiles: [extra]
`

func validFiles() map[string]string {
	return map[string]string{
		"compose.yml":     valid,
		"app/Dockerfile":  "FROM python:3.11.16-slim-bookworm\n",
		"app/config.txt":  "x\n",
		"app.env":         "A=1\n",
		"override.env":    "PASSWORD=from-file\n",
		"unused/.gitkeep": "",
	}
}

// environment returns the resolved environment of one service from composecheck's JSON output.
func environment(t *testing.T, stdout, service string) map[string]string {
	t.Helper()
	var project struct {
		Services map[string]struct {
			Environment map[string]*string `json:"environment"`
		} `json:"services"`
	}
	if err := json.Unmarshal([]byte(stdout), &project); err != nil {
		t.Fatalf("stdout is not JSON: %v: %s", err, stdout)
	}
	s, ok := project.Services[service]
	if !ok {
		t.Fatalf("service %s missing: %s", service, stdout)
	}
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

func TestValidProjectPrintsResolvedJSON(t *testing.T) {
	file := write(t, validFiles())

	code, stdout, stderr := check(t, "-f", file)

	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
	environment(t, stdout, "db") // a profiled service is there: every profile is enabled
	if got := environment(t, stdout, "app")["PASSWORD"]; got != "dev" {
		t.Fatalf("PASSWORD = %q, want the default dev", got)
	}
	if got := environment(t, stdout, "app")["A"]; got != "1" {
		t.Fatalf("A = %q, want 1 from the env_file", got)
	}
}

func TestEnvFileAndEnvOverrideDefaults(t *testing.T) {
	file := write(t, validFiles())
	envFile := filepath.Join(filepath.Dir(file), "override.env")

	_, fromFile, _ := check(t, "-f", file, "-env-file", envFile)
	_, fromFlag, _ := check(t, "-f", file, "-env-file", envFile, "-env", "PASSWORD=from-flag")

	if got := environment(t, fromFile, "app")["PASSWORD"]; got != "from-file" {
		t.Errorf("PASSWORD = %q, want from-file", got)
	}
	if got := environment(t, fromFlag, "app")["PASSWORD"]; got != "from-flag" {
		t.Errorf("PASSWORD = %q, want from-flag (-env wins over -env-file)", got)
	}
}

func TestDependsOnUnknownServiceFails(t *testing.T) {
	files := validFiles()
	files["compose.yml"] = strings.Replace(valid, "      db:\n        condition", "      nope:\n        condition", 1)
	file := write(t, files)

	code, _, stderr := check(t, "-f", file)

	if code != 1 || !strings.Contains(stderr, `undefined service "nope"`) {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
}

func TestSchemaViolationFails(t *testing.T) {
	files := validFiles()
	files["compose.yml"] = strings.Replace(valid, "    image: mysql:8.4.11", "    image: mysql:8.4.11\n    restart_policy: always", 1)
	file := write(t, files)

	code, _, stderr := check(t, "-f", file)

	if code != 1 || !strings.Contains(stderr, "restart_policy") {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
}

func TestMissingLocalFilesAreReported(t *testing.T) {
	files := validFiles()
	delete(files, "app/Dockerfile")
	delete(files, "app/config.txt")
	file := write(t, files)

	code, _, stderr := check(t, "-f", file)

	if code != 1 {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
	for _, want := range []string{"Dockerfile", "bind-mount source", "config.txt"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, stderr)
		}
	}
}

func TestMissingEnvFileFails(t *testing.T) {
	files := validFiles()
	delete(files, "app.env")
	file := write(t, files)

	code, _, stderr := check(t, "-f", file)

	if code != 1 || !strings.Contains(stderr, "app.env") {
		t.Fatalf("exit %d, stderr: %s", code, stderr)
	}
}

func TestUsageErrorExits2(t *testing.T) {
	code, _, _ := check(t, "-no-such-flag")

	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}
