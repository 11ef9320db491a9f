package app

import (
	"testing"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/internal/yamlconf"
)

func TestMemoryLimit(t *testing.T) {
	off := false
	cfg := &config.Config{Connectors: []connectors.Config{
		{Name: "a", MaxBufferedBytes: 64 << 20},
		{Name: "b", MaxBufferedBytes: 128 << 20},
		{Name: "c", MaxBufferedBytes: 64 << 20, Enabled: &off},
	}}
	const mib = 1 << 20
	for _, tc := range []struct {
		name   string
		limit  yamlconf.ByteSize
		o      Options
		cgroup int64
		want   int64
		pull   bool // tokens configured, so the API serves the pull API
	}{
		{"every role, every enabled connector", 0, Options{}, 0, 256*mib + 96*mib + 192*mib, false},
		{"one connector", 0, Options{Roles: []string{RoleConnector}, Connectors: []string{"b"}}, 0, 256*mib + 192*mib, false},
		{"the processor alone", 0, Options{Roles: []string{RoleProcessor}}, 0, 256 * mib, false},
		{"set in the config", 1 << 30, Options{}, 0, 1 << 30, false},
		{"a container's limit caps it", 0, Options{}, 400 * mib, 400 * mib / 10 * 9, false},
		{"a larger container changes nothing", 0, Options{Roles: []string{RoleProcessor}}, 4 << 30, 256 * mib, false},
		{"the pull API's window", 0, Options{Roles: []string{RoleAPI}}, 0, 256*mib + 384*mib, true},
		{"no window without tokens", 0, Options{Roles: []string{RoleAPI}}, 0, 256 * mib, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *cfg
			c.MemoryLimit = tc.limit
			if tc.pull {
				c.API.TokensFile, c.API.WindowBytes = "/etc/firehose/tokens.yaml", 256*mib
			}
			if got, src := MemoryLimit(&c, tc.o, tc.cgroup); got != tc.want || src == "" {
				t.Errorf("%s: %d (%s), want %d", tc.name, got, src, tc.want)
			}
		})
	}
}
