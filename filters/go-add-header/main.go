// go-add-header: a proxy-wasm filter (ABI proxy_abi_version_0_2_1) built with the official Go
// toolchain (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared, Go 1.24 or newer for
// //go:wasmexport). No proxy-wasm Go SDK builds with the official compiler (see
// filters/README.md), so this module declares the ABI's exports and the one hostcall it uses
// itself.
//
// No configuration. Behaviour: on_request_headers adds the request header x-go-filter: 1 and
// continues; every other callback does nothing and continues.
//
// Build: cd filters/go-add-header && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared \
// -o ../../target/filters/wasm/go_add_header.wasm .
package main

import "unsafe"

const (
	mapRequestHeaders = 0 // MapType::HttpRequestHeaders
	actionContinue    = 0 // Action::Continue
	logError          = 4
)

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mapType uint32, keyData unsafe.Pointer, keySize uint32, valueData unsafe.Pointer, valueSize uint32) uint32

//go:wasmimport env proxy_log
func proxyLog(level uint32, messageData unsafe.Pointer, messageSize uint32) uint32

func main() {}

// bytesOf returns a pointer to s's bytes and their count, for a hostcall.
func bytesOf(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func log(level uint32, message string) {
	p, n := bytesOf(message)
	proxyLog(level, p, n)
}

// allocations keeps every buffer handed to the host reachable: Go's collector does not move
// objects, but it would free one nothing references. This filter asks the host for no data, so
// the host has no reason to allocate; a filter that reads buffers would release them after use.
var allocations = map[uintptr][]byte{}

//go:wasmexport proxy_abi_version_0_2_1
func proxyAbiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) unsafe.Pointer {
	if size == 0 {
		size = 1
	}
	buf := make([]byte, size)
	p := unsafe.Pointer(unsafe.SliceData(buf))
	allocations[uintptr(p)] = buf
	return p
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentContextID uint32) {}

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootContextID, vmConfigurationSize uint32) uint32 { return 1 }

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootContextID, pluginConfigurationSize uint32) uint32 { return 1 }

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	kp, kn := bytesOf("x-go-filter")
	vp, vn := bytesOf("1")
	if status := proxyAddHeaderMapValue(mapRequestHeaders, kp, kn, vp, vn); status != 0 {
		log(logError, "go-add-header: proxy_add_header_map_value failed")
	}
	return actionContinue
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	return actionContinue
}

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) uint32 { return 1 }

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) {}

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) {}
