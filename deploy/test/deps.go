// Package deploytest checks the deployment files in deploy/: the Helm chart
// (lint, render, strict decoding into the Kubernetes API types), the
// compose file and the systemd units. It is a module of its own so that
// Helm and the Kubernetes libraries stay out of Caracal's go.mod.
package deploytest
