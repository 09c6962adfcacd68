package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
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
		{"SHUTDOWN_TIMEOUT", "0s"},
		{"DELIVERY_LEASE", "0"},
		{"REQUEST_TIMEOUT", "0s"},
		{"REQUEST_TIMEOUT", "-1s"},
		{"HTTP_ADDR", "garbage"},
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

func TestRedisSentinelURL(t *testing.T) {
	t.Parallel()
	c, err := Load(lookup(map[string]string{"REDIS_URL": "redis-sentinel://:sentinel-pw@10.0.0.1:26379,10.0.0.2:26379/9?master=mymaster&password=master-pw"}))
	if err != nil {
		t.Fatal(err)
	}
	want := asynq.RedisFailoverClientOpt{
		MasterName: "mymaster", SentinelAddrs: []string{"10.0.0.1:26379", "10.0.0.2:26379"},
		SentinelPassword: "sentinel-pw", Password: "master-pw", DB: 9,
	}
	if got, ok := c.Redis.(asynq.RedisFailoverClientOpt); !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("REDIS_URL read as %#v, want %#v", c.Redis, want)
	}
	c, err = Load(lookup(map[string]string{"REDIS_URL": "redis-sentinel://127.0.0.1:26394?master=m"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Redis.(asynq.RedisFailoverClientOpt); got.DB != 0 || got.Password != "" || got.SentinelPassword != "" {
		t.Fatalf("REDIS_URL read as %#v", got)
	}
	for _, bad := range []string{
		"redis-sentinel://127.0.0.1:26394",   // no master: asynq accepted it and failed at connect
		"redis-sentinel://127.0.0.1:26394/9", // idem
		"redis-sentinel://127.0.0.1:26394/x?master=m",
		"redis-sentinel://127.0.0.1:26394/9/1?master=m",
		"redis-sentinel://127.0.0.1:26394?master=m&db=9", // not a parameter: the database is the path
		"redis-sentinel://127.0.0.1?master=m",
		"redis-sentinel:///9?master=m",
	} {
		_, err := Load(lookup(map[string]string{"REDIS_URL": bad}))
		if err == nil || !strings.HasPrefix(err.Error(), "config: REDIS_URL ") || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "xxxxx") {
			t.Errorf("REDIS_URL=%q: error %v, want one line naming REDIS_URL", bad, err)
		}
	}
}

func TestRedisClusterURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		want asynq.RedisClusterClientOpt
	}{
		{"redis-cluster://10.0.0.1:7000,10.0.0.2:7001,redis-3.example:6379",
			asynq.RedisClusterClientOpt{Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7001", "redis-3.example:6379"}}},
		{"redis-cluster://app:p%40ss:word@10.0.0.1:7000/0",
			asynq.RedisClusterClientOpt{Addrs: []string{"10.0.0.1:7000"}, Username: "app", Password: "p@ss:word"}},
		{"redis-cluster://:pw@10.0.0.1:7000/",
			asynq.RedisClusterClientOpt{Addrs: []string{"10.0.0.1:7000"}, Password: "pw"}},
		{"Redis-Cluster://10.0.0.1:7000", // schemes are case-insensitive
			asynq.RedisClusterClientOpt{Addrs: []string{"10.0.0.1:7000"}}},
		{"redis-cluster://[::1]:7000,[fd00::2]:7001",
			asynq.RedisClusterClientOpt{Addrs: []string{"[::1]:7000", "[fd00::2]:7001"}}},
	} {
		c, err := Load(lookup(map[string]string{"REDIS_URL": tc.url}))
		if err != nil {
			t.Errorf("REDIS_URL=%q: %v", tc.url, err)
			continue
		}
		if got, ok := c.Redis.(asynq.RedisClusterClientOpt); !ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("REDIS_URL=%q read as %#v, want %#v", tc.url, c.Redis, tc.want)
		}
	}
	// TLS: no fixed server name, so that each node is checked against its
	// own address.
	c, err := Load(lookup(map[string]string{"REDIS_URL": "REDISS-CLUSTER://:pw@node-1.example:6380,node-2.example:6380"}))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := c.Redis.(asynq.RedisClusterClientOpt)
	if !ok || got.TLSConfig == nil || got.TLSConfig.ServerName != "" || got.TLSConfig.InsecureSkipVerify || len(got.Addrs) != 2 || got.Password != "pw" {
		t.Fatalf("rediss-cluster read as %#v", c.Redis)
	}
	for _, tc := range []struct{ url, says string }{
		{"redis-cluster://", "needs the cluster nodes' addresses"},
		{"redis-cluster:///0", "needs the cluster nodes' addresses"},
		{"redis-cluster://10.0.0.1:7000/1", "only database 0"},
		{"redis-cluster://10.0.0.1:7000/x", "only database 0"},
		{"redis-cluster://10.0.0.1:7000/0/1", "only database 0"},
		{"redis-cluster://10.0.0.1", `not HOST:PORT ("10.0.0.1"`},
		{"redis-cluster://10.0.0.1:7000,10.0.0.2", `not HOST:PORT ("10.0.0.2"`},
		{"redis-cluster://10.0.0.1:7000,,10.0.0.2:7001", `not HOST:PORT (""`},
		{"redis-cluster://10.0.0.1:7000,10.0.0.2:", `not HOST:PORT ("10.0.0.2:"`},
		{"redis-cluster://:7000", `not HOST:PORT (":7000"`},
		{"redis-cluster://10.0.0.1:7000,10.0.0.2:99999", `bad port ("10.0.0.2:99999")`},
		{"redis-cluster://10.0.0.1:7000,10.0.0.2:0", `bad port ("10.0.0.2:0")`},
		{"redis-cluster://10.0.0.1:x,10.0.0.2:7001", `bad port ("10.0.0.1:x")`},
		{"redis-cluster://:pw@", "needs the cluster nodes' addresses"},
		{"redis-cluster://10.0.0.1:7000?db=0", "takes no parameters (got db)"},
		{"redis-cluster://10.0.0.1:7000?read_only=true&max_redirects=3", "takes no parameters (got max_redirects, read_only)"},
		{"redis-cluster://10.0.0.1:7000?%zz", "takes no parameters"},
		{"redis-cluster://app@10.0.0.1:7000", "user name without a password"},
		{"redis-cluster://:top/secret@10.0.0.1:7000", "has an @ after the addresses"},
		{"redis-cluster://:p%zz@10.0.0.1:7000", "malformed user name or password"},
	} {
		_, err := Load(lookup(map[string]string{"REDIS_URL": tc.url}))
		if err == nil || !strings.HasPrefix(err.Error(), "config: REDIS_URL ") || !strings.Contains(err.Error(), tc.says) ||
			strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "xxxxx") {
			t.Errorf("REDIS_URL=%q: error %v, want one line naming REDIS_URL that says %q", tc.url, err, tc.says)
		}
	}
}

func TestErrorsDoNotEchoPasswords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, value string }{
		{"REDIS_URL", "redis://:topsecret@127.0.0.1:63xx/0"},
		{"REDIS_URL", "rediss://user:topsecret@127.0.0.1:63xx/0"},
		{"REDIS_URL", "redis://:top/secret@127.0.0.1:63xx/0"},
		{"REDIS_URL", "redis-sentinel://:topsecret@127.0.0.1:26379"},
		{"REDIS_URL", "redis-cluster://:topsecret@127.0.0.1:7000/3"},
		{"REDIS_URL", "redis-cluster://app:topsecret@127.0.0.1:x"},
		{"REDIS_URL", "rediss-cluster://app:top@secret@127.0.0.1:7000,127.0.0.1"},
		{"REDIS_URL", "redis-cluster://127.0.0.1:7000?password=topsecret"},
		{"REDIS_URL", "redis-cluster://127.0.0.1:7000?pass=topsecret"},
		{"REDIS_URL", "redis-cluster://:top/secret@127.0.0.1:7000"},
		{"REDIS_URL", "redis-cluster://:top?secret@127.0.0.1:7000"},
		{"REDIS_URL", "redis-cluster://:top#secret@127.0.0.1:7000"},
		{"REDIS_URL", "redis-cluster://:secret%zz@127.0.0.1:7000"},
		{"DATABASE_URL", "postgres://u:topsecret@127.0.0.1:badport/db"},
		{"ERP_URL", "ftp://erp:topsecret@erp.example"},
		{"ERP_URL", "https://erp:topsecret@erp.example:x/"},
		{"PUBLIC_URL", "portal.example?password=topsecret"},
		{"SENDGRID_API_URL", "https://u:topsecret@%zz"},
		// Passwords that make the URL unparsable, so that its error would
		// quote it: a space, a double quote (written \" by %q), a single
		// quote, a # or a stray %.
		{"DATABASE_URL", "postgres://root:Pg secretPass456@127.0.0.1:5432/db"},
		{"DATABASE_URL", `postgres://root:Pg"secretPass456@127.0.0.1:5432/db`},
		{"DATABASE_URL", `postgres://root:it's a secret@127.0.0.1:5432/db`},
		{"DATABASE_URL", "postgres://root:pw#secret@127.0.0.1:5432/db"},
		{"DATABASE_URL", "postgres://root:100%secret@127.0.0.1:5432/db"},
		{"DATABASE_URL", "postgresql://root:a b/secret@127.0.0.1:5432/db"},
		{"REDIS_URL", "redis://:Redis secretPass@127.0.0.1:6379/0"},
		{"REDIS_URL", `redis://:Redis"secretPass@127.0.0.1:6379/0`},
		{"REDIS_URL", `rediss://default:it's secret@127.0.0.1:6380/0`},
		{"REDIS_URL", "redis-sentinel://:sentinel secret@127.0.0.1:26379?master=m"},
		{"ERP_URL", "https://erp:erp secret@erp.example"},
		{"ERP_URL", `https://erp:"secret"@erp.example`},
		{"SENDGRID_API_URL", "https://u:it's secret@api.example"},
	} {
		_, err := Load(lookup(map[string]string{tc.name: tc.value}))
		if err == nil || !strings.Contains(err.Error(), tc.name) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s=%q: error %v, want one line naming the variable", tc.name, tc.value, err)
			continue
		}
		if strings.Contains(strings.ToLower(err.Error()), "secret") {
			t.Errorf("%s=%q: the error shows the password: %v", tc.name, tc.value, err)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`parse "redis://:pw@h:x/0": invalid port`:      `parse "redis://:xxxxx@h:x/0": invalid port`,
		"postgres://u:pw@h/db?sslmode=disable":         "postgres://u:xxxxx@h/db?sslmode=disable",
		"postgres://u@h/db?sslpassword=pw&x=1":         "postgres://u@h/db?sslpassword=xxxxx&x=1",
		"redis-sentinel://h:1?master=m&password=pw":    "redis-sentinel://h:1?master=m&password=xxxxx",
		"redis://h:6379/0 and http://portal.example/a": "redis://h:6379/0 and http://portal.example/a",
		// Passwords with spaces, quotes, slashes and at signs, as url.Parse
		// and %q echo them.
		`config: DATABASE_URL is not a valid URL (parse "postgres://root:Pg SecretPass456@127.0.0.1:5432/db": net/url: invalid userinfo)`: `config: DATABASE_URL is not a valid URL (parse "postgres://root:xxxxx@127.0.0.1:5432/db": net/url: invalid userinfo)`,
		`got "postgres://u:p\"w@h/db"`:                         `got "postgres://u:xxxxx@h/db"`,
		`parse "redis://:it's a secret@h:6379/0": x`:           `parse "redis://:xxxxx@h:6379/0": x`,
		"redis://:top/sec@ret@h:6379/0":                        "redis://:xxxxx@h:6379/0",
		"a redis://:p w@h:1/0, b postgres://u:q\tr@h/db, c":    "a redis://:xxxxx@h:1/0, b postgres://u:xxxxx@h/db, c",
		"postgres://u@h/db: dial tcp h:5432: connection reset": "postgres://u@h/db: dial tcp h:5432: connection reset",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEverySpecsUnderASecondAreRefused(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"@every 0s", "@every -5s", "@every 1ms", "@every 999ms", "@every 1500ms", "CRON_TZ=Europe/Berlin @every 10ms"} {
		_, err := Load(lookup(map[string]string{"RESEND_SCHEDULE": spec}))
		if err == nil || !strings.Contains(err.Error(), "RESEND_SCHEDULE") || !strings.Contains(err.Error(), "at least 1s") {
			t.Errorf("RESEND_SCHEDULE=%q: error %v, want it refused", spec, err)
		}
	}
	for _, spec := range []string{"@every 1s", "@every 30s", "@every 2m", "CRON_TZ=UTC @every 1h", "0 2 * * *", "@daily"} {
		if _, err := Load(lookup(map[string]string{"RESEND_SCHEDULE": spec, "OUTBOX_SWEEP_SCHEDULE": spec})); err != nil {
			t.Errorf("%q refused: %v", spec, err)
		}
	}
}

func TestSQLiteNeedsAFile(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{"sqlite:", "sqlite://", "sqlite::memory:", "sqlite:file::memory:?cache=shared"} {
		_, err := Load(lookup(map[string]string{"DATABASE_URL": dsn}))
		if err == nil || !strings.Contains(err.Error(), "DATABASE_URL must name a database file") {
			t.Errorf("DATABASE_URL=%q: error %v, want it refused", dsn, err)
		}
	}
	if _, err := Load(lookup(map[string]string{"DATABASE_URL": "sqlite:./onboard.db"})); err != nil {
		t.Error(err)
	}
}

func TestMonitorCredentialsTogether(t *testing.T) {
	t.Parallel()
	_, err := Load(lookup(map[string]string{"MONITOR_PASSWORD": "x"}))
	if err == nil || err.Error() != "config: MONITOR_USER and MONITOR_PASSWORD must be set together" {
		t.Fatalf("error %v", err)
	}
}
