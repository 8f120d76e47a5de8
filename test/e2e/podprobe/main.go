// Command podprobe is the e2e suite's workload image: an HTTP server (default :8080) that tells
// who it is and what it sees, so a test can check a pod from the outside without exec:
//
//	GET /   {"hostname": ..., "remote": "<client ip:port as seen here>", "interfaces": [...]}
//
// "remote" shows the source address after any NAT on the way; "interfaces" shows which NICs the
// pod got (a normal pod on a vpcnat node must have only lo and eth0).
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

// Interface is one network interface of the pod, as the pod sees it.
type Interface struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
}

// Report is the answer to GET /.
type Report struct {
	Hostname   string      `json:"hostname"`
	Remote     string      `json:"remote"`
	Interfaces []Interface `json:"interfaces"`
}

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	flag.Parse()
	http.HandleFunc("/", serve)
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("podprobe serving on %s", *listen)
	log.Fatal(srv.ListenAndServe())
}

func serve(w http.ResponseWriter, r *http.Request) {
	rep := Report{Remote: r.RemoteAddr}
	var err error
	if rep.Hostname, err = os.Hostname(); err != nil {
		http.Error(w, "hostname: "+err.Error(), http.StatusInternalServerError)
		return
	}
	ifs, err := net.Interfaces()
	if err != nil {
		http.Error(w, "interfaces: "+err.Error(), http.StatusInternalServerError)
		return
	}
	for _, i := range ifs {
		addrs, err := i.Addrs()
		if err != nil {
			http.Error(w, "addresses of "+i.Name+": "+err.Error(), http.StatusInternalServerError)
			return
		}
		one := Interface{Name: i.Name, Addrs: []string{}}
		for _, a := range addrs {
			one.Addrs = append(one.Addrs, a.String())
		}
		rep.Interfaces = append(rep.Interfaces, one)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(rep); err != nil {
		log.Printf("writing the report to %s: %v", r.RemoteAddr, err)
	}
}
