// Package config turns the environment into one validated Config. A bad
// value stops start-up with one line naming the variable.
package config

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/robfig/cron/v3"

	"github.com/onboard-dev/onboard/internal/emailaddr"
)

// Config is every setting of every process.
type Config struct {
	DatabaseURL     string
	RedisURL        string
	Redis           asynq.RedisConnOpt
	HTTPAddr        string
	PublicURL       string
	SendGridAPIKey  string
	SendGridAPIURL  string
	MailFrom        string
	MailFromName    string
	ERPURL          string
	ERPToken        string
	ERPConcurrency  int
	ERPStaleAfter   time.Duration
	MonitorUser     string
	MonitorPassword string
	MonitorReadonly bool

	// SendGridWebhookKey verifies SendGrid's signed event webhook
	// (SENDGRID_WEBHOOK_PUBLIC_KEY, the base64 key SendGrid shows).
	SendGridWebhookKey *ecdsa.PublicKey
	// MetricsToken, when set, is required as a bearer token on /metrics;
	// MetricsAddr is where the worker serves /metrics (off when empty; the
	// API serves it on HTTP_ADDR).
	MetricsToken string
	MetricsAddr  string
	// RateLimitPerMinute and RateLimitBurst bound each tenant's API
	// requests across every API process (0: no limit).
	RateLimitPerMinute int
	RateLimitBurst     int
	// RequestTimeout bounds an API request's work (not uploads/downloads).
	RequestTimeout time.Duration
	// ResendDailyCap is the most emails one invitation gets in 24 hours.
	ResendDailyCap int

	ResendSchedule      string
	ExpirySchedule      string
	ERPReverifySchedule string
	OutboxSweepSchedule string

	// OutboxGrace leaves fresh outbox rows to the API's own enqueue;
	// OutboxStale is how long an enqueued task may stay unfinished before the
	// sweep checks that Redis still holds it.
	OutboxGrace time.Duration
	OutboxStale time.Duration
	// DeliveryLease is how long a worker holds a claimed email before another
	// may take it over (longer than a send can take).
	DeliveryLease time.Duration

	// ImportMaxBytes is the largest import file the API accepts (413 above);
	// ImportUnzipMaxBytes caps an XLSX upload decompressed (zip bombs).
	ImportMaxBytes      int64
	ImportUnzipMaxBytes int64

	WorkerConcurrency int
	ShutdownTimeout   time.Duration
	LogFormat         string // json or text
	LogLevel          string
}

// Defaults of CONTRACT.md.
const (
	DefaultDatabaseURL = "postgres://localhost:5432/onboard?sslmode=disable"
	DefaultRedisURL    = "redis://localhost:6379/0"
)

// Load reads the configuration from getenv (os.Getenv in main).
func Load(getenv func(string) string) (*Config, error) {
	e := env{getenv: getenv}
	c := &Config{
		DatabaseURL:         e.str("DATABASE_URL", DefaultDatabaseURL),
		RedisURL:            e.str("REDIS_URL", DefaultRedisURL),
		HTTPAddr:            e.str("HTTP_ADDR", ":8080"),
		PublicURL:           strings.TrimRight(e.str("PUBLIC_URL", "http://localhost:8080"), "/"),
		SendGridAPIKey:      e.str("SENDGRID_API_KEY", ""),
		SendGridAPIURL:      strings.TrimRight(e.str("SENDGRID_API_URL", "https://api.sendgrid.com"), "/"),
		MailFrom:            e.str("MAIL_FROM", ""),
		MailFromName:        e.str("MAIL_FROM_NAME", ""),
		ERPURL:              strings.TrimRight(e.str("ERP_URL", ""), "/"),
		ERPToken:            e.str("ERP_TOKEN", ""),
		ERPConcurrency:      e.int("ERP_CONCURRENCY", 8, 1, 1000),
		ERPStaleAfter:       e.duration("ERP_STALE_AFTER", 30*24*time.Hour),
		MonitorUser:         e.str("MONITOR_USER", ""),
		MonitorPassword:     e.str("MONITOR_PASSWORD", ""),
		MonitorReadonly:     e.bool("MONITOR_READONLY", false),
		MetricsToken:        e.str("METRICS_TOKEN", ""),
		MetricsAddr:         e.str("METRICS_ADDR", ""),
		RateLimitPerMinute:  e.int("RATE_LIMIT_PER_MINUTE", 600, 0, 1000000),
		RateLimitBurst:      e.int("RATE_LIMIT_BURST", 100, 1, 1000000),
		RequestTimeout:      e.positiveDuration("REQUEST_TIMEOUT", 30*time.Second),
		ResendDailyCap:      e.int("RESEND_DAILY_CAP", 3, 1, 100),
		ResendSchedule:      e.cron("RESEND_SCHEDULE", "0 2 * * *"),
		ExpirySchedule:      e.cron("EXPIRY_SCHEDULE", "30 1 * * *"),
		ERPReverifySchedule: e.cron("ERP_REVERIFY_SCHEDULE", "0 3 * * *"),
		OutboxSweepSchedule: e.cron("OUTBOX_SWEEP_SCHEDULE", "@every 30s"),
		OutboxGrace:         e.duration("OUTBOX_GRACE", 30*time.Second),
		OutboxStale:         e.duration("OUTBOX_STALE", 15*time.Minute),
		DeliveryLease:       e.positiveDuration("DELIVERY_LEASE", 3*time.Minute),
		ImportMaxBytes:      int64(e.int("IMPORT_MAX_MB", 50, 1, 2048)) << 20,
		ImportUnzipMaxBytes: int64(e.int("IMPORT_UNZIP_MAX_MB", 512, 1, 16384)) << 20,
		WorkerConcurrency:   e.int("WORKER_CONCURRENCY", 20, 1, 1000),
		ShutdownTimeout:     e.positiveDuration("SHUTDOWN_TIMEOUT", 30*time.Second),
		LogFormat:           e.oneOf("LOG_FORMAT", "json", "json", "text"),
		LogLevel:            e.oneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
	}
	e.databaseURL("DATABASE_URL", c.DatabaseURL)
	e.listenAddr("HTTP_ADDR", c.HTTPAddr)
	if c.MetricsAddr != "" {
		e.listenAddr("METRICS_ADDR", c.MetricsAddr)
	}
	if opt, err := parseRedisURL(c.RedisURL); err != nil {
		e.fail("REDIS_URL", err.Error())
	} else {
		c.Redis = opt
	}
	e.httpURL("PUBLIC_URL", c.PublicURL, true)
	e.httpURL("SENDGRID_API_URL", c.SendGridAPIURL, true)
	e.httpURL("ERP_URL", c.ERPURL, false)
	if c.MailFrom != "" {
		if a, err := mail.ParseAddress(c.MailFrom); err != nil || a.Name != "" || emailaddr.Validate(c.MailFrom) != nil {
			e.fail("MAIL_FROM", "must be a plain email address, its local part ASCII (SendGrid's rule)")
		}
	}
	if strings.ContainsAny(c.MailFromName, "\r\n") {
		e.fail("MAIL_FROM_NAME", "must not contain line breaks")
	}
	if v := e.str("SENDGRID_WEBHOOK_PUBLIC_KEY", ""); v != "" {
		key, err := ParseWebhookKey(v)
		if err != nil {
			e.fail("SENDGRID_WEBHOOK_PUBLIC_KEY", err.Error())
		}
		c.SendGridWebhookKey = key
	}
	if (c.MonitorUser == "") != (c.MonitorPassword == "") {
		e.fail("MONITOR_USER", "and MONITOR_PASSWORD must be set together")
	}
	if e.err != nil {
		return nil, e.err
	}
	return c, nil
}

// ParseWebhookKey reads the verification key SendGrid shows for a signed
// event webhook: base64 of a DER (PKIX) ECDSA public key. sendgrid-go's own
// ConvertPublicKeyBase64ToECDSA panics on a key of another type; this
// refuses it with a message.
func ParseWebhookKey(b64 string) (*ecdsa.PublicKey, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("is not base64 (%v)", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("is not a public key (%v)", err)
	}
	key, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("is a %T, not the ECDSA key SendGrid signs with", pub)
	}
	return key, nil
}

// RequireMail checks what a process that sends email needs.
func (c *Config) RequireMail() error {
	switch {
	case c.SendGridAPIKey == "":
		return fmt.Errorf("config: SENDGRID_API_KEY is required to send email (or run `onboard dev`, which uses a mail sink)")
	case c.MailFrom == "":
		return fmt.Errorf("config: MAIL_FROM is required to send email")
	}
	return nil
}

type env struct {
	getenv func(string) string
	err    error
}

// fail records the first bad value. Messages may echo a URL, so passwords
// in them are masked.
func (e *env) fail(name, msg string) {
	if e.err == nil {
		e.err = fmt.Errorf("config: %s %s", name, Redact(msg))
	}
}

func (e *env) str(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

func (e *env) int(name string, def, min, max int) int {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		e.fail(name, fmt.Sprintf("must be a whole number from %d to %d (got %q)", min, max, v))
		return def
	}
	return n
}

func (e *env) bool(name string, def bool) bool {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, fmt.Sprintf("must be true or false (got %q)", v))
		return def
	}
	return b
}

func (e *env) duration(name string, def time.Duration) time.Duration {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.fail(name, fmt.Sprintf("must be a duration such as 30s (got %q)", v))
		return def
	}
	return d
}

// positiveDuration is a duration that must be above zero: a lease, a
// timeout or a drain of 0 would not mean "none" but "already over" (and
// asynq would quietly turn a zero shutdown timeout into 8 s).
func (e *env) positiveDuration(name string, def time.Duration) time.Duration {
	d := e.duration(name, def)
	if d == 0 {
		e.fail(name, fmt.Sprintf("must be above zero, e.g. %s", def))
		return def
	}
	return d
}

func (e *env) oneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(e.str(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	e.fail(name, fmt.Sprintf("must be one of %s (got %q)", strings.Join(allowed, ", "), v))
	return def
}

// CronParser reads the schedule specs: standard five-field specs, an
// optional leading seconds field, CRON_TZ= prefixes and descriptors such as
// @daily or @every 30s.
var CronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func (e *env) cron(name, def string) string {
	v := e.str(name, def)
	if _, err := CronParser.Parse(v); err != nil {
		e.fail(name, fmt.Sprintf("is not a cron spec (%v)", err))
		return v
	}
	// cron runs an @every spec under a second (0s, -5s, 1ms) every second,
	// and drops the fraction of one above: a typo would turn a nightly run
	// into one a second.
	if d, ok := everyInterval(v); ok && (d < time.Second || d%time.Second != 0) {
		e.fail(name, fmt.Sprintf("must repeat @every whole seconds, at least 1s (got %q)", v))
	}
	return v
}

// everyInterval is the interval of an "@every D" spec (after an optional
// CRON_TZ= or TZ= prefix), which CronParser has accepted.
func everyInterval(spec string) (time.Duration, bool) {
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		_, spec, _ = strings.Cut(spec, " ")
		spec = strings.TrimSpace(spec)
	}
	rest, ok := strings.CutPrefix(spec, "@every ")
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(rest))
	return d, err == nil
}

// listenAddr checks the form of a listen address ([HOST]:PORT); whether the
// port is free is found out when listening.
func (e *env) listenAddr(name, v string) {
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil {
		e.fail(name, fmt.Sprintf("must be [HOST]:PORT, e.g. :8080 (got %q)", v))
	}
}

// databaseURL checks the form of DATABASE_URL; whether it connects is
// found out at start-up.
func (e *env) databaseURL(name, v string) {
	switch {
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		if _, err := url.Parse(v); err != nil {
			e.fail(name, urlProblem(err))
		}
	case strings.HasPrefix(v, "sqlite:"):
		// An empty path is a temporary database and :memory: one in memory:
		// both vanish when the process ends, migrations and all.
		path := strings.TrimPrefix(strings.TrimPrefix(v, "sqlite:"), "//")
		if path == "" || path == ":memory:" || strings.HasPrefix(path, "file::memory:") {
			e.fail(name, fmt.Sprintf("must name a database file, e.g. sqlite:./onboard.db (got %q)", v))
		}
	default:
		e.fail(name, "must start with postgres:// or sqlite:")
	}
}

// parseRedisURL reads REDIS_URL: asynq's URI forms, with the sentinel form
// read here, since asynq's parser ignores its database number and accepts it
// without a master name (which fails only when connecting), and the cluster
// form, which asynq's parser does not have.
func parseRedisURL(raw string) (asynq.RedisConnOpt, error) {
	if scheme, _, ok := strings.Cut(raw, "://"); ok && (strings.EqualFold(scheme, "redis-cluster") || strings.EqualFold(scheme, "rediss-cluster")) {
		return parseClusterURL(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// asynq's error would quote the value, password and all.
		return nil, errors.New(urlProblem(err))
	}
	if u.Scheme == "redis-sentinel" {
		return parseSentinelURL(u)
	}
	return asynq.ParseRedisURI(raw)
}

// clusterForm is quoted in errors, without its password parts (see
// sentinelForm).
const clusterForm = "redis-cluster://HOST:PORT[,HOST:PORT…][/0] or rediss-cluster://… for TLS (README: Configuration)"

// parseClusterURL reads redis-cluster://[USER:PASSWORD@]H:P[,H:P…][/0], and
// rediss-cluster://… for TLS. The addresses are seeds: the client learns the
// other nodes from them. The credentials are every node's. A cluster has
// only database 0, so another number is refused here rather than by every
// node at connect time.
//
// The address list is split off before url.Parse, which checks only the
// port after the last colon of a host, so that each address is checked on
// its own (and IPv6 ones may be listed).
func parseClusterURL(raw string) (asynq.RedisConnOpt, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	scheme = strings.ToLower(scheme)
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if strings.Contains(tail, "@") {
		// A password holding /, ? or # ends the addresses early; saying
		// which address is wrong would show part of it.
		return nil, fmt.Errorf("has an @ after the addresses: percent-encode the / ? # of a password (%%2F %%3F %%23)")
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i], authority[i+1:]
	}
	var opt asynq.RedisClusterClientOpt
	if userinfo != "" {
		// Parsed apart from the rest: its errors would quote the password.
		u, err := url.Parse("redis://" + userinfo + "@cluster")
		if err != nil {
			return nil, fmt.Errorf("has a malformed user name or password (percent-encode its special characters)")
		}
		p, ok := u.User.Password()
		if !ok {
			return nil, fmt.Errorf("has a user name without a password (it goes after the user name and a colon)")
		}
		opt.Username, opt.Password = u.User.Username(), p
	}
	u, err := url.Parse(scheme + "://cluster" + tail)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL
		}
		return nil, fmt.Errorf("is not a valid URL (%v): the form is %s", err, clusterForm)
	}
	if u.RawQuery != "" {
		// Only the names: a value may be a secret.
		got := strings.Join(slices.Sorted(maps.Keys(u.Query())), ", ")
		if got == "" {
			got = "a malformed query"
		}
		return nil, fmt.Errorf("takes no parameters (got %s): the form is %s", got, clusterForm)
	}
	if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
		return nil, fmt.Errorf("has %q where the database number goes: a Redis Cluster has only database 0", u.Path)
	}
	if hosts == "" {
		return nil, fmt.Errorf("needs the cluster nodes' addresses: the form is %s", clusterForm)
	}
	for _, addr := range strings.Split(hosts, ",") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("has a node address that is not HOST:PORT (%q; cluster nodes listen on 6379 by default)", addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("has a node address with a bad port (%q)", addr)
		}
		opt.Addrs = append(opt.Addrs, addr)
	}
	if scheme == "rediss-cluster" {
		// No ServerName: crypto/tls checks each node's certificate against
		// the host it is dialled at, and a cluster hands out the addresses
		// of its other nodes.
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return opt, nil
}

// urlProblem says what is wrong with a URL that does not parse, without
// quoting any of it: url.Parse's error quotes the whole value, and a value
// that does not parse is one whose password cannot be told from the rest
// (a space, a quote, a # or a % in it).
func urlProblem(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var escape url.EscapeError
	msg := err.Error()
	why := ""
	switch {
	case strings.Contains(msg, "invalid userinfo"):
		why = ": its user or password has a character that must be percent-encoded (a space as %20, \" as %22, / as %2F, @ as %40)"
	case errors.As(err, &escape):
		why = ": it has a % that does not start an escape (write a literal % as %25)"
	case strings.HasPrefix(msg, "invalid port"):
		why = ": its port is not a number (a # ? or / in a password must be percent-encoded)"
	case strings.Contains(msg, "control character"):
		why = ": it has a control character"
	case strings.Contains(msg, "in host name"), strings.Contains(msg, "IP-literal"):
		why = ": its host name has an invalid character"
	}
	return "is not a valid URL" + why
}

// sentinelForm is quoted in errors; its password parts are left out, since
// errors are masked as if they echoed a URL.
const sentinelForm = "redis-sentinel://HOST:PORT[,HOST:PORT…][/DB]?master=NAME (README: Configuration)"

// parseSentinelURL reads redis-sentinel://[USER:PASSWORD@]H:P[,H:P…][/DB]?master=NAME[&password=P].
// The password before the host authenticates to the sentinels (as in
// asynq); password= to the master and replicas (as in go-redis' failover
// URL); DB is selected on the master.
func parseSentinelURL(u *url.URL) (asynq.RedisConnOpt, error) {
	q := u.Query()
	for k := range q {
		if k != "master" && k != "password" {
			return nil, fmt.Errorf("has an unknown parameter %q: the form is %s", k, sentinelForm)
		}
	}
	opt := asynq.RedisFailoverClientOpt{MasterName: q.Get("master"), Password: q.Get("password")}
	if opt.MasterName == "" {
		return nil, fmt.Errorf("needs the master's name (?master=NAME): the form is %s", sentinelForm)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("needs the sentinels' addresses: the form is %s", sentinelForm)
	}
	for _, addr := range strings.Split(u.Host, ",") {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return nil, fmt.Errorf("has a sentinel address without a port (%q; sentinels listen on 26379 by default)", addr)
		}
		opt.SentinelAddrs = append(opt.SentinelAddrs, addr)
	}
	if p, ok := u.User.Password(); ok {
		opt.SentinelUsername, opt.SentinelPassword = u.User.Username(), p
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("has %q where the database number goes: the form is %s", u.Path, sentinelForm)
		}
		opt.DB = n
	}
	return opt, nil
}

var (
	urlScheme     = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://`)
	queryPassword = regexp.MustCompile(`(?i)([?&][a-z_]*password=)[^&\s"'#]*`)
)

// Redact masks the passwords of the URLs in s: in USER:PASSWORD@ everything
// from the first : after scheme:// to the last @ before the next scheme://
// (or the end), since what gets echoed is a URL that did not parse, whose
// password may hold spaces, quotes (escaped as \" by %q), / or @; and
// password= parameters. It may mask more than the password, never less.
func Redact(s string) string {
	var b strings.Builder
	done := 0
	schemes := urlScheme.FindAllStringIndex(s, -1)
	for i, m := range schemes {
		start, end := m[1], len(s)
		if i+1 < len(schemes) {
			end = schemes[i+1][0]
		}
		at := strings.LastIndex(s[start:end], "@")
		if at < 0 {
			continue
		}
		colon := strings.Index(s[start:start+at], ":")
		if colon < 0 {
			continue // a user without a password
		}
		b.WriteString(s[done : start+colon+1])
		b.WriteString("xxxxx")
		done = start + at
	}
	b.WriteString(s[done:])
	return queryPassword.ReplaceAllString(b.String(), "${1}xxxxx")
}

func (e *env) httpURL(name, v string, required bool) {
	if v == "" {
		if required {
			e.fail(name, "is required")
		}
		return
	}
	// The value is not quoted: it may carry a password.
	u, err := url.Parse(v)
	switch {
	case err != nil:
		e.fail(name, urlProblem(err))
	case u.Scheme == "":
		e.fail(name, "must be an http(s) URL, starting with http:// or https://")
	case u.Scheme != "http" && u.Scheme != "https":
		e.fail(name, fmt.Sprintf("must be an http(s) URL (its scheme is %s)", u.Scheme))
	case u.Host == "":
		e.fail(name, "must be an http(s) URL with a host, e.g. https://portal.example.com")
	}
}
