// The trivial upstream of bench/gateway.py: every request gets 200 and a short JSON body,
// so the figures measure Traefik and its forward-auth hop, not the API behind them.
package main

import (
	"log"
	"net/http"
	"os"
)

func main() {
	body := []byte(`{"ok": true}` + "\n")
	log.Fatal(http.ListenAndServe(os.Getenv("ADDR"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})))
}
