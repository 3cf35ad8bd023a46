// Command etcd is upstream etcd 3.5 (3.4 lacks RequestWatchProgress, which watch-list needs),
// built from Go modules for deltawatch's local Kubernetes API server.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
