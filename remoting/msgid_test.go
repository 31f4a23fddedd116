package remoting

import (
	"net"
	"strings"
	"testing"
)

func TestOffsetMsgID(t *testing.T) {
	for _, tc := range []struct {
		ip     string
		port   int
		offset int64
		want   string // the id, or "" to check only the round trip
		addr   string
	}{
		// RocketMQ's own example shape: 10.0.0.1:10911, offset 0x1234.
		{"10.0.0.1", 10911, 0x1234, "0A000001" + "00002A9F" + "0000000000001234", "10.0.0.1:10911"},
		{"127.0.0.1", 65535, 1 << 40, "", "127.0.0.1:65535"},
		{"::1", 10911, 7, "", "[::1]:10911"},
	} {
		id := FormatOffsetMsgID(net.ParseIP(tc.ip), tc.port, tc.offset)
		if tc.want != "" && id != tc.want {
			t.Errorf("%s:%d@%d: id %s, want %s", tc.ip, tc.port, tc.offset, id, tc.want)
		}
		if id != strings.ToUpper(id) {
			t.Errorf("id %s is not upper case, as RocketMQ's are", id)
		}
		addr, off, err := ParseOffsetMsgID(id)
		if err != nil || addr != tc.addr || off != tc.offset {
			t.Errorf("parse %s: %s %d %v, want %s %d", id, addr, off, err, tc.addr, tc.offset)
		}
		if _, _, err := ParseOffsetMsgID(strings.ToLower(id)); err != nil {
			t.Errorf("parse lower-case %s: %v", id, err)
		}
	}
}

func TestParseOffsetMsgIDRefuses(t *testing.T) {
	for _, id := range []string{
		"",
		"0A000001",                         // short
		"0A00000100002A9F00000000000012ZZ", // not hex
		"0A000001" + "00010000" + "0000000000000001", // port 65536: Ferry's old ids looked like this
		"0A000001" + "00000000" + "0000000000000001", // port 0
		"0A000001" + "00002A9F" + "8000000000000000", // negative offset
	} {
		if addr, off, err := ParseOffsetMsgID(id); err == nil {
			t.Errorf("%q parsed as %s@%d", id, addr, off)
		}
	}
}
