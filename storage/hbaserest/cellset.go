package hbaserest

import (
	"encoding/base64"
	"encoding/json"
)

// CellSet is the HBase REST JSON representation of rows: keys, columns and values are base64.
// Exported so the fake server (hbasefake) speaks exactly what the client parses.
type CellSet struct {
	Row []Row `json:"Row"`
}

// Row is one row of a CellSet.
type Row struct {
	Key  B64    `json:"key"`
	Cell []Cell `json:"Cell"`
}

// Cell is one cell; Column is "family:qualifier".
type Cell struct {
	Column    B64   `json:"column"`
	Timestamp int64 `json:"timestamp,omitempty"`
	Value     B64   `json:"$"`
}

// B64 is bytes that travel as standard base64 in JSON.
type B64 []byte

// MarshalJSON encodes b as a base64 string.
func (b B64) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.StdEncoding.EncodeToString(b))
}

// UnmarshalJSON decodes a base64 string.
func (b *B64) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := base64.StdEncoding.DecodeString(s)
	*b = v
	return err
}

// TableSchema is the body of GET/PUT /{table}/schema (attribute values are strings).
type TableSchema struct {
	Name         string         `json:"name"`
	ColumnSchema []ColumnSchema `json:"ColumnSchema"`
}

// ColumnSchema describes one column family.
type ColumnSchema struct {
	Name     string `json:"name"`
	TTL      string `json:"TTL,omitempty"`
	Versions string `json:"VERSIONS,omitempty"`
}

// ScannerSpec is the body of PUT /{table}/scanner.
type ScannerSpec struct {
	StartRow B64 `json:"startRow,omitempty"`
	EndRow   B64 `json:"endRow,omitempty"`
	// Batch is the maximum number of cells per GET of the scanner.
	Batch int `json:"batch,omitempty"`
}
