#!/bin/sh
# make-libreoffice.sh writes libreoffice.xlsx and libreoffice-ooxml.xlsx, read
# by xlsx_programs_test.go, from libreoffice.fods (a flat ODS file written
# by hand: a Customers sheet whose A3 is the number 123 in format 000000, and
# a second sheet, Notes). Needs LibreOffice (Debian: apt-get install
# --no-install-recommends libreoffice-calc-nogui). Made with LibreOffice
# 7.4.7.2 (Debian bookworm 4:7.4.7-1+deb12u14):
#
#	sh make-libreoffice.sh
#
# libreoffice.xlsx is File > Save As "Excel 2007-365" (filter "Calc MS Excel
# 2007 XML"), libreoffice-ooxml.xlsx "Office Open XML Spreadsheet" (filter
# "Calc Office Open XML"). If the rows change, change the expectations in
# xlsx_programs_test.go too.
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
soffice() {
	command soffice -env:UserInstallation="file://$tmp/profile" --headless "$@"
}
soffice --convert-to xlsx --outdir "$tmp/excel" "$dir/libreoffice.fods"
soffice --convert-to 'xlsx:Calc Office Open XML' --outdir "$tmp/ooxml" "$dir/libreoffice.fods"
cp "$tmp/excel/libreoffice.xlsx" "$dir/libreoffice.xlsx"
cp "$tmp/ooxml/libreoffice.xlsx" "$dir/libreoffice-ooxml.xlsx"
