package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
)

type hclogLogger = hclog.Logger

// newHCLogger is a logger for hashicorp/raft that writes through logger:
// hclog writes one JSON object a line, which slogWriter turns back into a
// record of the process's log (its message prefixed "raft: "), so the process has one
// log format.
func newHCLogger(logger *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.Info,
		Output:     &slogWriter{logger: logger},
		JSONFormat: true,
	})
}

type slogWriter struct{ logger *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		w.line(line)
	}
	return len(p), nil
}

func (w *slogWriter) line(line []byte) {
	if len(line) == 0 {
		return
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		w.logger.Info(string(line))
		return
	}
	level := slog.LevelInfo
	switch lv, _ := m["@level"].(string); strings.ToLower(lv) {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	msg, _ := m["@message"].(string)
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if obj, ok := v.(map[string]any); ok && len(obj) == 0 {
			continue // a value hclog could not render (raft's node structs)
		}
		if !strings.HasPrefix(k, "@") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	attrs := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		attrs = append(attrs, k, m[k])
	}
	w.logger.Log(context.Background(), level, "raft: "+msg, attrs...)
}
