// Command sendgridfake serves a local SendGrid v3 mail send endpoint that
// checks requests as SendGrid does (and against SendGrid's OpenAPI
// description when ../shared/testdata/sendgrid-oai is beside the project)
// and keeps what it accepts, listed at GET /messages; what SendGrid would
// accept and then drop (a recipient name with `,` or `;`) is listed at
// GET /dropped. It lets a newcomer run the whole system with no SendGrid
// account:
//
//	go run ./cmd/sendgridfake --addr 127.0.0.1:8025 --key SG.local
//	SENDGRID_API_URL=http://127.0.0.1:8025 SENDGRID_API_KEY=SG.local onboard worker
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/onboard-dev/onboard/internal/mail/sendgridfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8025", "listen address")
	key := flag.String("key", "SG.local", "the API key it accepts")
	flag.Parse()
	_, h := sendgridfake.NewHandler(*key)
	fmt.Fprintf(os.Stderr, "sendgridfake: SENDGRID_API_URL=http://%s SENDGRID_API_KEY=%s; accepted emails at http://%s/messages\n", *addr, *key, *addr)
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
