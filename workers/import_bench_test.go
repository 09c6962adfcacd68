package workers_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/onboard-dev/onboard/store/storetest"
)

// BenchmarkImportInProcess profiles the import path without the binary:
//
//	go test -run '^$' -bench ImportInProcess -benchtime 1x -cpuprofile cpu.out ./workers
func BenchmarkImportInProcess(b *testing.B) {
	for range b.N {
		b.StopTimer()
		f := newFixture(b, storetest.NewPostgres(b))
		withDispatcher(b, f)
		var csv strings.Builder
		csv.WriteString("Account Number,Customer Email\n")
		for i := range 20000 {
			fmt.Fprintf(&csv, "%d,user%d@example.com\n", 700000+i, i)
		}
		im := f.upload(b, []byte(csv.String()), nil)
		b.StartTimer()
		if err := f.importNow(b, im); err != nil {
			b.Fatal(err)
		}
	}
}
