package main

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	publishColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	consumeColor = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	p50Color     = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	p99Color     = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
)

// drawChart writes a PNG with, per body size, the publish and consume
// rates of each system (thousands of msg/s) and its end-to-end latency.
func drawChart(path string, rows []row, sizes []int, caption string) error {
	var names []string
	for _, rw := range rows {
		names = append(names, rw.sys.short)
	}
	var plots [][]*plot.Plot
	for _, size := range sizes {
		var rates, lats []*plot.Plot
		pubs, cons := make(plotter.Values, len(rows)), make(plotter.Values, len(rows))
		p50s, p99s := make(plotter.Values, len(rows)), make(plotter.Values, len(rows))
		for i, rw := range rows {
			r := rw.med[size]
			pubs[i], cons[i] = r.publish/1000, r.consume/1000
			p50s[i], p99s[i] = r.p50.Seconds()*1000, r.p99.Seconds()*1000
		}
		p, err := bars(fmt.Sprintf("%s bodies: confirmed publish and consume", bytesName(size)), "thousand msg/s", names,
			[]plotter.Values{pubs, cons}, []string{"publish", "consume"}, []color.Color{publishColor, consumeColor})
		if err != nil {
			return err
		}
		rates = append(rates, p)
		q, err := bars(fmt.Sprintf("%s bodies: end-to-end latency at half the publish rate", bytesName(size)), "ms", names,
			[]plotter.Values{p50s, p99s}, []string{"p50", "p99"}, []color.Color{p50Color, p99Color})
		if err != nil {
			return err
		}
		lats = append(lats, q)
		plots = append(plots, append(rates, lats...))
	}
	const w, h = 14 * vg.Inch, 4.2 * vg.Inch
	img := vgimg.New(w, h*vg.Length(len(plots))+0.3*vg.Inch)
	dc := draw.New(img)
	top := draw.Crop(dc, 0, 0, 0, -0.3*vg.Inch)
	tiles := draw.Tiles{Rows: len(plots), Cols: 2, PadX: vg.Inch / 3, PadY: vg.Inch / 4, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	canvases := plot.Align(plots, tiles, top)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	dc.FillText(draw.TextStyle{Color: color.Gray{Y: 0x40}, Font: font.From(plot.DefaultFont, 11), Handler: plot.DefaultTextHandler, XAlign: draw.XCenter},
		vg.Point{X: w / 2, Y: h*vg.Length(len(plots)) + 0.1*vg.Inch}, caption)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// bars makes a grouped bar chart: one group per name, one bar per series.
func bars(title, ylabel string, names []string, series []plotter.Values, labels []string, colors []color.Color) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	width := vg.Points(22)
	top := 0.0
	for i, v := range series {
		b, err := plotter.NewBarChart(v, width)
		if err != nil {
			return nil, err
		}
		b.Color = colors[i]
		b.LineStyle.Width = 0
		b.Offset = width * vg.Length(2*i-len(series)+1) / 2
		p.Add(b)
		p.Legend.Add(labels[i], b)
		// The value above each bar, so that small bars still read.
		xys := make(plotter.XYs, len(v))
		texts := make([]string, len(v))
		for j, y := range v {
			xys[j] = plotter.XY{X: float64(j), Y: y}
			texts[j] = short(y)
			top = max(top, y)
		}
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts})
		if err != nil {
			return nil, err
		}
		for j := range l.TextStyle {
			l.TextStyle[j].XAlign = draw.XCenter
			l.TextStyle[j].Font.Size = 8
		}
		l.Offset = vg.Point{X: b.Offset, Y: 2}
		p.Add(l)
	}
	p.Y.Max = top * 1.25 // room for the legend
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	p.NominalX(names...)
	return p, nil
}

// short formats a bar's value with three significant digits at most.
func short(v float64) string {
	switch {
	case v == 0:
		return ""
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
