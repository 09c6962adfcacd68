package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/erp"
	"github.com/onboard-dev/onboard/internal/filelock"
	"github.com/onboard-dev/onboard/internal/importer"
	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/workers"
)

const devSummary = `Runs the whole system in one process on embedded defaults: the API, the
worker pool, the scheduler and the dashboard, with an in-process Redis
(miniredis), the store on SQLite under --data, a mail sink (served at
/dev/mail) in place of SendGrid and the ERP simulator with sample accounts.
Where DATABASE_URL, REDIS_URL, SENDGRID_API_KEY or ERP_URL are set, the real
service is used instead. It prints the URLs, the dashboard's credentials, a
demo tenant's API key and curl lines to try.`

// devMailPath is where the mail sink's page is served.
const devMailPath = "/dev/mail"

func runDev(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "dev", devSummary)
	dataDir := fs.String("data", "./.onboard", "where the SQLite database, the kept emails and the demo credentials live")
	addr := fs.String("addr", "", "listen address (default HTTP_ADDR, else 127.0.0.1:8080: loopback only, the mail page shows invitation links)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// As the worker does: with SendGrid, the sender is the user's to name.
	if strings.TrimSpace(env.getenv("SENDGRID_API_KEY")) != "" && strings.TrimSpace(env.getenv("MAIL_FROM")) == "" {
		return errors.New("dev: MAIL_FROM is required when SENDGRID_API_KEY is set (unset SENDGRID_API_KEY to keep the emails on the mail page)")
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("dev: data directory: %w", err)
	}
	// Absolute, so the printed lines work pasted in any directory.
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return fmt.Errorf("dev: data directory: %w", err)
	}
	// One dev per data directory: a second would create its own demo tenant
	// and overwrite dev.json, and the two would share the SQLite file.
	unlock, err := filelock.TryLock(filepath.Join(dir, "dev.lock"))
	if errors.Is(err, filelock.ErrLocked) {
		return fmt.Errorf("dev: another onboard dev is running on %s (stop it, or give this one another --data)", dir)
	}
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer unlock()
	listenAddr := *addr
	if listenAddr == "" {
		listenAddr = env.getenv("HTTP_ADDR")
	}
	if listenAddr == "" {
		listenAddr = "127.0.0.1:8080"
	}
	// Listening first lets the links in emails name the real port (--addr
	// 127.0.0.1:0 picks a free one).
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer ln.Close()
	apiURL := "http://" + browsable(ln.Addr().(*net.TCPAddr))

	// The embedded defaults fill in what the environment leaves unset; what
	// it sets wins, and goes through the same validation as in production.
	defaults := map[string]string{
		"DATABASE_URL":       "sqlite:" + filepath.Join(dir, "onboard.db"),
		"HTTP_ADDR":          ln.Addr().String(),
		"PUBLIC_URL":         apiURL,
		"MAIL_FROM":          "noreply@onboard.example",
		"MAIL_FROM_NAME":     "onboard (dev)",
		"LOG_FORMAT":         "text",
		"WORKER_CONCURRENCY": "4", // SQLite has one writer
		// The sweep is the only way work reaches a fresh in-process Redis
		// after a restart; it runs at start and then often.
		"OUTBOX_SWEEP_SCHEDULE": "@every 10s",
	}
	var embedded []string
	if env.getenv("REDIS_URL") == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("dev: in-process Redis: %w", err)
		}
		defer mr.Close()
		defaults["REDIS_URL"] = "redis://" + mr.Addr() + "/0"
		embedded = append(embedded, "Redis: in-process (miniredis)")
	}
	if env.getenv("ERP_URL") == "" {
		stopERP, url, accounts, err := startERPSimulator()
		if err != nil {
			return err
		}
		defer stopERP()
		defaults["ERP_URL"] = url
		embedded = append(embedded, "ERP: simulator with "+describeAccounts(accounts))
	}
	if env.getenv("DATABASE_URL") == "" {
		embedded = append(embedded, "database: SQLite at "+filepath.Join(dir, "onboard.db"))
	}
	state, err := loadDevState(dir)
	if err != nil {
		return err
	}
	if env.getenv("MONITOR_USER") == "" && env.getenv("MONITOR_PASSWORD") == "" {
		defaults["MONITOR_USER"], defaults["MONITOR_PASSWORD"] = state.MonitorUser, state.MonitorPassword
	}
	denv := *env
	denv.getenv = func(k string) string {
		if v := env.getenv(k); strings.TrimSpace(v) != "" {
			return v
		}
		return defaults[k]
	}
	cfg, err := loadConfig(&denv)
	if err != nil {
		return err
	}
	env.log = denv.log

	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := store.Migrate(ctx, db); err != nil {
		return err
	}
	tenantName, err := ensureDemoTenant(ctx, db, state, dir)
	if err != nil {
		return err
	}
	samplePath := filepath.Join(dir, "sample-customers.csv")
	if err := os.WriteFile(samplePath, importer.SampleCSV, 0o600); err != nil {
		return fmt.Errorf("dev: %w", err)
	}

	var mailer workers.Mailer
	var sink *mail.Sink
	if cfg.SendGridAPIKey == "" {
		if sink, err = mail.NewSink(filepath.Join(dir, "mail")); err != nil {
			return err
		}
		mailer = sink
		embedded = append(embedded, "mail: kept, not sent (see the mail page)")
	} else {
		mailer = mail.NewSendGrid(cfg.SendGridAPIKey, cfg.SendGridAPIURL, &http.Client{Timeout: 30 * time.Second})
	}

	dispatcher, closeDispatcher := newDispatcher(cfg, db, &denv)
	defer closeDispatcher()
	// Tasks queued in the in-process Redis die with the process; what was
	// committed and not finished is in the outbox, and goes back now.
	r, err := dispatcher.Sweep(ctx, outbox.SweepOptions{Grace: 0, Stale: 0})
	if err != nil {
		return fmt.Errorf("dev: re-enqueue unfinished work: %w", err)
	}
	if r.Enqueued+r.Recovered+r.Rerun > 0 {
		env.log.Info("dev: re-enqueued unfinished work from the last run", "enqueued", r.Enqueued, "recovered", r.Recovered, "rerun", r.Rerun)
	}
	// One process, one registry: /metrics shows the workers' sends too.
	m := metrics.New()
	stopWorker, err := startWorker(ctx, &denv, cfg, db, dispatcher, mailer, m)
	if err != nil {
		return err
	}
	defer stopWorker()
	stopScheduler, err := startScheduler(ctx, &denv, cfg, db, dispatcher)
	if err != nil {
		return err
	}
	defer stopScheduler()

	apiHandler, closeAPI, err := newAPIHandler(cfg, db, dispatcher, &denv, m)
	if err != nil {
		return err
	}
	defer closeAPI()
	root := http.NewServeMux()
	root.Handle("/", apiHandler)
	if sink != nil {
		page := mail.SinkPage(sink, devMailPath)
		root.Handle(devMailPath, page)
		root.Handle(devMailPath+"/", page)
	}

	printDevBanner(env, devBanner{
		APIURL: apiURL, MonitorUser: cfg.MonitorUser, MonitorPassword: cfg.MonitorPassword,
		MailPage: sink != nil, Tenant: tenantName, APIKey: state.APIKey,
		SampleFile: samplePath, DataDir: dir, Embedded: embedded,
	})
	return serveHTTP(ctx, &denv, "api", ln, root, cfg.ShutdownTimeout)
}

// browsable is the address to print: a wildcard listen address is reached
// through localhost.
func browsable(a *net.TCPAddr) string {
	if a.IP.IsUnspecified() {
		return fmt.Sprintf("localhost:%d", a.Port)
	}
	return a.String()
}

// startERPSimulator serves the simulator, loaded with the sample accounts,
// on a loopback port: the worker reaches it through the real REST connector.
func startERPSimulator() (stop func(), url string, accounts []erp.Account, err error) {
	accounts, err = erp.LoadAccountsCSV(bytes.NewReader(erp.SampleAccountsCSV))
	if err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, fmt.Errorf("dev: ERP simulator: %w", err)
	}
	hs := &http.Server{Handler: erp.NewSimulator(accounts), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return func() { hs.Close() }, "http://" + ln.Addr().String(), accounts, nil
}

// describeAccounts names the first few account numbers for the banner.
func describeAccounts(accounts []erp.Account) string {
	var numbers []string
	for _, a := range accounts[:min(4, len(accounts))] {
		numbers = append(numbers, a.Number)
	}
	return fmt.Sprintf("%s … (%d accounts)", strings.Join(numbers, ", "), len(accounts))
}

// devState is what `dev` keeps in the data directory so that a restart
// prints the same key and credentials: the demo tenant's API key is stored
// hashed in the database like any other, so its plain form lives only here
// (mode 0600, on the developer's machine).
type devState struct {
	TenantID        uuid.UUID `json:"tenant_id"`
	APIKey          string    `json:"api_key"`
	MonitorUser     string    `json:"monitor_user"`
	MonitorPassword string    `json:"monitor_password"`
}

func devStatePath(dir string) string { return filepath.Join(dir, "dev.json") }

func loadDevState(dir string) (*devState, error) {
	s := &devState{}
	b, err := os.ReadFile(devStatePath(dir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("dev: %w", err)
	default:
		if err := json.Unmarshal(b, s); err != nil {
			return nil, fmt.Errorf("dev: %s is damaged (%v): delete it to start over", devStatePath(dir), err)
		}
	}
	if s.MonitorUser == "" || s.MonitorPassword == "" {
		var p [12]byte
		_, _ = crand.Read(p[:])
		s.MonitorUser, s.MonitorPassword = "admin", hex.EncodeToString(p[:])
	}
	return s, saveDevState(dir, s)
}

func saveDevState(dir string, s *devState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(devStatePath(dir), b, 0o600); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	return nil
}

// ensureDemoTenant reuses the demo tenant of an earlier run when its key
// still opens it, and creates one otherwise (first run, or a new database).
func ensureDemoTenant(ctx context.Context, db *bun.DB, s *devState, dir string) (string, error) {
	if s.APIKey != "" {
		t, err := store.TenantByAPIKey(ctx, db, s.APIKey)
		if err == nil && t.ID == s.TenantID {
			return t.Name, nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	t, key, err := store.CreateTenant(ctx, db, "Demo Vendor", "admin@demo-vendor.example", time.Now())
	if err != nil {
		return "", err
	}
	s.TenantID, s.APIKey = t.ID, key
	return t.Name, saveDevState(dir, s)
}

type devBanner struct {
	APIURL, MonitorUser, MonitorPassword string
	MailPage                             bool
	Tenant, APIKey, SampleFile, DataDir  string
	Embedded                             []string
}

func printDevBanner(env *environment, b devBanner) {
	w := env.stdout
	fmt.Fprintf(w, "\nonboard dev is running (state in %s; stop with Ctrl-C)\n\n", b.DataDir)
	fmt.Fprintf(w, "  API        %s\n", b.APIURL)
	fmt.Fprintf(w, "  Dashboard  %s/monitor  user %s  password %s\n", b.APIURL, b.MonitorUser, b.MonitorPassword)
	if b.MailPage {
		fmt.Fprintf(w, "  Mail       %s%s\n", b.APIURL, devMailPath)
	}
	fmt.Fprintf(w, "  API key    %s  (tenant %q)\n", b.APIKey, b.Tenant)
	for _, e := range b.Embedded {
		fmt.Fprintf(w, "  %s\n", e)
	}
	auth := "-H 'Authorization: Bearer " + b.APIKey + "'"
	fmt.Fprintf(w, "\nInvite a customer:\n  curl -sS %s/v1/customers %s -H 'Content-Type: application/json' -d '{\"company_name\":\"Northwind Traders\",\"account_number\":\"100100\",\"email\":\"buyer@northwind.example\",\"first_name\":\"Nancy\",\"invite\":true}'\n", b.APIURL, auth)
	fmt.Fprintf(w, "Import the sample file (good rows and bad ones, checked against the ERP):\n  curl -sS %s/v1/imports %s -F file=@%s -F validate_erp=true\n", b.APIURL, auth, shellQuote(b.SampleFile))
	fmt.Fprintf(w, "Then: curl -sS %s/v1/imports %s   (the import's status), and the mail page.\n\n", b.APIURL, auth)
}

// shellQuote quotes a path for a paste into a POSIX shell when it needs it.
func shellQuote(s string) string {
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
