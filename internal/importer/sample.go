package importer

import _ "embed"

// SampleCSV is the file `onboard dev` offers to upload: good rows whose
// accounts the ERP simulator knows, and one row for each common mistake
// (empty and invalid email, empty account, an account or email repeated
// from an earlier row, an account the ERP does not know).
//
//go:embed sample-customers.csv
var SampleCSV []byte
