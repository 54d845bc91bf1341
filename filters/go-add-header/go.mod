module sidecar/filters/go-add-header

go 1.24
