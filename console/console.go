// Package console is Ferry's web console: a page of plain HTML, CSS and
// JavaScript, embedded in the binary (building Ferry needs no Node
// toolchain), served on the HTTP port at "/" over the admin API (package
// admin), which decides who may see and change what. docs/console.md
// shows its pages.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// AssetPrefix is where the console's scripts and styles are served.
const AssetPrefix = "/console/"

// IndexPattern is the console's page: the root only, so that every other
// path stays free for the routes of other components.
const IndexPattern = "GET /{$}"

// contentSecurityPolicy lets the page run its own script and style only,
// talk to its own origin only, and not be framed (no clickjacking).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// Index serves the console's page.
func Index() http.Handler {
	return secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, assets, "assets/index.html")
	}))
}

// Assets serves the scripts and styles under AssetPrefix.
func Assets() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree always has assets/
	}
	return secure(http.StripPrefix(AssetPrefix, http.FileServerFS(sub)))
}
