package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// counted is a value that counts how often it is formatted.
type counted struct{ n *int }

func (c counted) LogValue() slog.Value {
	*c.n++
	return slog.StringValue("formatted")
}

func TestAttributesAreFormattedOnlyForRecordsWritten(t *testing.T) {
	var out bytes.Buffer
	formatted := 0
	logger := slog.New(&lazyAttrs{base: slog.NewTextHandler(&out, nil)})

	logger.With("args", counted{&formatted}).Debug("dropped at INFO")
	if formatted != 0 || out.Len() != 0 {
		t.Fatalf("a dropped record formatted its attributes %d times and wrote %q", formatted, out.String())
	}

	logger.With("conn", "a").With("args", counted{&formatted}).Info("kept", "n", 1)
	line := out.String()
	if formatted != 1 {
		t.Fatalf("a written record formatted its attributes %d times, want 1", formatted)
	}
	for _, want := range []string{"msg=kept", "conn=a", "args=formatted", "n=1"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	if strings.Index(line, "conn=a") > strings.Index(line, "args=") {
		t.Errorf("attributes out of order in %q", line)
	}
}

func TestGroupsKeepTheAttributesGivenBeforeThem(t *testing.T) {
	var out bytes.Buffer
	logger := slog.New(&lazyAttrs{base: slog.NewTextHandler(&out, nil)})

	logger.With("outer", 1).WithGroup("g").With("inner", 2).Warn("grouped")
	line := out.String()
	for _, want := range []string{"outer=1", "g.inner=2", "level=WARN"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}
