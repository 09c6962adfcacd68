// make.mjs writes the workbooks of xlsx_programs_test.go with spreadsheet
// libraries other than excelize, so the XLSX reader is tested against files
// as other programs write them. The Go tests only read the committed
// .xlsx files; Node is needed only to make them again:
//
//	mkdir /tmp/xlsxgen && cd /tmp/xlsxgen && npm init -y && npm install xlsx exceljs
//	node /path/to/internal/importer/testdata/workbooks/make.mjs /path/to/internal/importer/testdata/workbooks
//
// (the packages are looked up from the current directory, not this file's).
// Made with xlsx (SheetJS) 0.18.5 and exceljs 4.4.0. If the rows change,
// change the expectations in xlsx_programs_test.go too.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(path.join(process.cwd(), 'make.cjs'));
const XLSX = require('xlsx');
const ExcelJS = require('exceljs');

const outDir = process.argv[2];
if (!outDir) {
  console.error('usage: node make.mjs OUTDIR');
  process.exit(2);
}

const header = ['Account Number', 'Customer Email', 'Customer First Name', 'Customer Last Name'];

// The rows of every workbook, by spreadsheet row number (the header is row
// 1). null leaves the cell out; row 5 is left blank.
const rows = {
  2: [145722, 'jane+news@example.com', 'Jane', 'Smith'], // account as a number; "+" in the email
  3: ['00123', 'zoe@example.com', 'Zoë', '日本'], // account as text with leading zeros; non-ASCII
  4: [4711, 'ann@example.com', 'Ann & "Jo"', 'Lee <Jr>'], // characters XML escapes
  6: [4712, '  spaced@example.com ', '  Max  ', ' Smith'], // leading and trailing spaces
  7: [4713, 'nofirst@example.com', null, 'Smith'], // no first-name cell at all
  8: [4714, 'emptyfirst@example.com', '', 'Smith'], // a first-name cell holding ""
};

// Rows only exceljs writes: rich text and a formula with a cached string.
const exceljsRows = {
  9: [4715, 'muller@example.com', 'Hans', { richText: [{ font: { bold: true }, text: 'Mü' }, { text: 'ller' }] }],
  10: [4716, { formula: 'LOWER("Formula@Example.com")', result: 'formula@example.com' }, 'Fay', 'Smith'],
};

function aoa(byNumber) {
  const last = Math.max(...Object.keys(byNumber).map(Number));
  const out = [header];
  for (let n = 2; n <= last; n++) out.push(byNumber[n] ?? []);
  return out;
}

function sheetjs(file, bookSST) {
  const wb = XLSX.utils.book_new();
  XLSX.utils.book_append_sheet(wb, XLSX.utils.aoa_to_sheet(aoa(rows)), 'Customers');
  const buf = XLSX.write(wb, { type: 'buffer', bookType: 'xlsx', bookSST, compression: true });
  fs.writeFileSync(path.join(outDir, file), buf);
}

async function exceljs(file) {
  const wb = new ExcelJS.Workbook();
  wb.creator = 'make.mjs';
  wb.created = wb.modified = new Date(Date.UTC(2024, 0, 1));
  const ws = wb.addWorksheet('Customers');
  const all = { 1: header, ...rows, ...exceljsRows };
  for (const [n, values] of Object.entries(all)) {
    values.forEach((v, i) => {
      if (v !== null) ws.getRow(Number(n)).getCell(i + 1).value = v;
    });
  }
  fs.writeFileSync(path.join(outDir, file), await wb.xlsx.writeBuffer({ useSharedStrings: true }));
}

sheetjs('sheetjs-sst.xlsx', true);
sheetjs('sheetjs-inline.xlsx', false);
await exceljs('exceljs.xlsx');
