// Command kube-apiserver is the upstream kube-apiserver, built from Go modules so that
// deltawatch's tests and demo can run a real API server without a cluster or Docker.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
