package main

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// hopRe matches a bucket of Ferry's per-hop histograms (frontends/mqtt
// hops.go) and of its publish duration.
var hopRe = regexp.MustCompile(`^(ferry_mqtt_delivery_hop_seconds|ferry_mqtt_publish_duration_seconds)_bucket\{(?:hop="(\w+)",)?le="([^"]+)"\} (\S+)$`)

// hops reads Ferry's metrics at url and returns the p50 and p99 of each hop
// of a delivery (upper bounds of the histogram buckets they fall in).
func hops(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	type bucket struct{ le, n float64 }
	hist := map[string][]bucket{}
	var order []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := hopRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name := m[2]
		if name == "" {
			name = "acknowledged"
		}
		le, err1 := strconv.ParseFloat(m[3], 64)
		n, err2 := strconv.ParseFloat(m[4], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		if _, ok := hist[name]; !ok {
			order = append(order, name)
		}
		hist[name] = append(hist[name], bucket{le, n})
	}
	q := func(bs []bucket, f float64) string {
		total := bs[len(bs)-1].n
		for _, b := range bs {
			if b.n >= f*total {
				return fmt.Sprintf("%.2f", b.le*1e3)
			}
		}
		return "?"
	}
	var parts []string
	for _, name := range order {
		bs := hist[name]
		if len(bs) == 0 || bs[len(bs)-1].n == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s p50 ≤%s p99 ≤%s ms", name, q(bs, 0.5), q(bs, 0.99)))
	}
	return strings.Join(parts, "; ")
}
