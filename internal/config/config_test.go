package config

import (
	"strings"
	"testing"
)

func lookup(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != DefaultDatabaseURL || c.HTTPAddr != ":8080" || c.ResendSchedule != "0 2 * * *" || c.SendGridAPIURL != "https://api.sendgrid.com" || c.ERPConcurrency != 8 {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.RequireMail(); err == nil {
		t.Fatal("RequireMail passed without SENDGRID_API_KEY")
	}
}

func TestBadValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, value string }{
		{"DATABASE_URL", "mysql://x"},
		{"REDIS_URL", "http://nope"},
		{"PUBLIC_URL", "not a url"},
		{"SENDGRID_API_URL", "ftp://x"},
		{"MAIL_FROM", "Jane <jane@example.com>"},
		{"RESEND_SCHEDULE", "every night"},
		{"WORKER_CONCURRENCY", "0"},
		{"SHUTDOWN_TIMEOUT", "soon"},
		{"MONITOR_READONLY", "maybe"},
		{"LOG_FORMAT", "xml"},
		{"MONITOR_USER", "ops"},
	} {
		_, err := Load(lookup(map[string]string{tc.name: tc.value}))
		if err == nil || !strings.Contains(err.Error(), tc.name) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s=%q: error %v, want one line naming the variable", tc.name, tc.value, err)
		}
	}
}
