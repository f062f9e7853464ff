// Command vcsim serves govmomi's vCenter simulator (simulator.VPX()) on
// 127.0.0.1 for vmkeep's tests, with what vcsim 0.24 lacks added as HTTP
// middleware around the simulator's own handler:
//
//   - snapshot freezing: at CreateSnapshot_Task every disk's flat file is
//     copied to <datastore dir>/.vmkeep-snapshots/<snapshot moref>/<same
//     relative path>, so a reader of the snapshot sees a stable point in time
//     while the test keeps writing to the live disk; with CBT on, the
//     snapshot's disk backings get changeId "<epoch uuid>/<seq>";
//   - QueryChangedDiskAreas, answered from per-64-KiB block digests of the
//     frozen content recorded for each changeId ("*" = allocated blocks); an
//     unknown or stale changeId (CBT disabled and re-enabled) is a FileFault;
//     one answer covers at most -answer-limit bytes so clients must loop;
//   - SearchIndex.FindAllByUuid (vSphere API 4.0+): every VM (or host) whose
//     BIOS or instance UUID equals the given one, optionally within one
//     datacenter, as the reference describes; vcsim 0.24 only has FindByUuid;
//   - RevertToSnapshot_Task copies the frozen content back to the live disk;
//   - expired sessions on demand (POST /vmkeep/expire-sessions), answered
//     with NotAuthenticated like a vCenter whose session timed out.
//
// Invariants: one SOAP request is handled at a time (a global mutex), so the
// simulator's tasks (which finish synchronously) and our bookkeeping never
// interleave; flat files are kept at least as long as the disk's capacity.
//
// On start it prints one JSON line on stdout (url, datastores, certificate
// fingerprints, control url) and runs until stdin closes or a signal comes.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const blockSize = 64 * 1024

const sessionCookie = "vmware_soap_session"

// block is the digest of one 64 KiB block and whether it holds any non-zero byte.
type block struct {
	sum     [32]byte
	nonZero bool
}

// track is the CBT state of one disk of one VM: the epoch (reset when CBT
// is switched off and on) and the block digests recorded for each sequence.
type track struct {
	epoch string
	seq   int
	hist  map[int][]block
}

type frozenDisk struct {
	live   string // absolute path of the live flat file
	frozen string // absolute path of the frozen copy
	blocks []block
	size   int64
}

type harness struct {
	next        http.Handler
	mu          sync.Mutex
	answerLimit int64
	dsDirs      map[string]string
	tracks      map[string]*track                // vm moref + "/" + device key
	cbtOn       map[string]bool                  // vm moref -> last known changeTrackingEnabled
	frozen      map[string]map[int32]*frozenDisk // snapshot moref -> device key -> disk
	seen        map[string]bool                  // session cookies seen
	expired     map[string]bool                  // session cookies expired on demand
	qcdaCalls   int
	failQuiesce bool
}

func main() {
	useTLS := flag.Bool("tls", false, "serve https with a fresh self-signed certificate")
	limit := flag.Int64("answer-limit", envInt("VCSIM_CBT_ANSWER_LIMIT", 0), "max bytes of disk one QueryChangedDiskAreas answer covers (0 = whole disk; env VCSIM_CBT_ANSWER_LIMIT)")
	user := flag.String("user", "user", "user name that logs in")
	pass := flag.String("password", "pass", "password that logs in")
	flag.Parse()

	log.SetOutput(os.Stderr)
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		log.Fatalf("model.Create: %v", err)
	}
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(*user, *pass)}
	var certDER []byte
	if *useTLS {
		cert, err := selfSigned()
		if err != nil {
			log.Fatalf("certificate: %v", err)
		}
		certDER = cert.Certificate[0]
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	s := model.Service.NewServer()

	h := &harness{
		answerLimit: *limit,
		dsDirs:      map[string]string{},
		tracks:      map[string]*track{},
		cbtOn:       map[string]bool{},
		frozen:      map[string]map[int32]*frozenDisk{},
		seen:        map[string]bool{},
		expired:     map[string]bool{},
	}
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		h.dsDirs[ds.Name] = ds.Info.GetDatastoreInfo().Url
	}
	h.mu.Lock()
	h.sizeAllDisks()
	h.mu.Unlock()
	h.next = s.Server.Config.Handler
	s.Server.Config.Handler = h

	u := *s.URL
	u.User = nil
	info := map[string]interface{}{
		"url":        u.String(),
		"control":    fmt.Sprintf("%s://%s/vmkeep", u.Scheme, u.Host),
		"datastores": h.dsDirs,
		"user":       *user,
		"password":   *pass,
		"tls":        *useTLS,
	}
	if certDER != nil {
		s256 := sha256.Sum256(certDER)
		s1 := sha1.Sum(certDER)
		info["sha256_fingerprint"] = colonHex(s256[:])
		info["sha1_thumbprint"] = colonHex(s1[:])
	}
	line, _ := json.Marshal(info)
	fmt.Println(string(line))

	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(ioutil.Discard, os.Stdin)
		done <- struct{}{}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		done <- struct{}{}
	}()
	<-done
	s.Close()
	for _, dir := range h.dsDirs {
		_ = os.RemoveAll(filepath.Join(dir, ".vmkeep-snapshots"))
	}
	model.Remove()
}

func envInt(name string, def int64) int64 {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vcsim.vmkeep.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ServeHTTP is the middleware: control endpoints, then SOAP interception.
func (h *harness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/vmkeep/") {
		h.control(w, r)
		return
	}
	if r.Method != http.MethodPost || (r.URL.Path != "/sdk" && r.URL.Path != "/sdk/vimService") {
		h.next.ServeHTTP(w, r)
		return
	}
	body, err := ioutil.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()

	name := methodName(body)
	if c, err := r.Cookie(sessionCookie); err == nil {
		h.seen[c.Value] = true
		if h.expired[c.Value] {
			if name == "Login" || name == "RetrieveServiceContent" {
				// An expired session is no session at all.
				r.Header.Del("Cookie")
			} else {
				writeFault(w, "The session is not authenticated.", "NotAuthenticated", "")
				return
			}
		}
	}
	if name == "QueryChangedDiskAreas" {
		h.queryChangedDiskAreas(w, body)
		return
	}
	if name == "FindAllByUuid" {
		findAllByUuid(w, body)
		return
	}

	var before *types.ManagedObjectReference
	method, _ := simulator.UnmarshalBody(types.TypeFunc(), body)
	if name == "CreateSnapshot_Task" && method != nil {
		if req, ok := method.Body.(*types.CreateSnapshot_Task); ok && req.Quiesce && h.failQuiesce {
			// Like vCenter: the call starts a task, and the task fails.
			if vm, ok := simulator.Map.Get(method.This).(*simulator.VirtualMachine); ok {
				task := simulator.CreateTask(vm, "createSnapshot", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
					return nil, &types.ApplicationQuiesceFault{}
				})
				ref := task.Run()
				writeEnvelope(w, http.StatusOK, fmt.Sprintf(
					`<CreateSnapshot_TaskResponse xmlns="urn:vim25"><returnval type="Task">%s</returnval></CreateSnapshot_TaskResponse>`,
					xmlEscape(ref.Value)))
				return
			}
		}
		if vm, ok := simulator.Map.Get(method.This).(*simulator.VirtualMachine); ok && vm.Snapshot != nil {
			before = vm.Snapshot.CurrentSnapshot
		}
	}

	r.Body = ioutil.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	rec := httptest.NewRecorder()
	h.next.ServeHTTP(rec, r)
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie {
			h.seen[c.Value] = true
		}
	}

	if rec.Code == http.StatusOK && method != nil {
		switch name {
		case "CreateSnapshot_Task":
			if vm, ok := simulator.Map.Get(method.This).(*simulator.VirtualMachine); ok && vm.Snapshot != nil && vm.Snapshot.CurrentSnapshot != nil {
				cur := *vm.Snapshot.CurrentSnapshot
				if before == nil || *before != cur {
					if err := h.freeze(vm, cur); err != nil {
						log.Printf("freeze %s: %v", cur.Value, err)
					}
				}
			}
		case "ReconfigVM_Task":
			h.sizeAllDisks()
			if vm, ok := simulator.Map.Get(method.This).(*simulator.VirtualMachine); ok {
				h.noteCBT(vm)
			}
		case "CreateVM_Task":
			h.sizeAllDisks()
		case "RevertToSnapshot_Task":
			h.revert(method.This)
		case "RemoveSnapshot_Task", "RemoveAllSnapshots_Task":
			h.dropRemovedSnapshots()
		}
	}

	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// methodName returns the local name of the first element inside the SOAP Body.
func methodName(body []byte) string {
	d := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			if inBody {
				return se.Name.Local
			}
			if se.Name.Local == "Body" {
				inBody = true
			}
		}
	}
}

func (h *harness) control(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch strings.TrimPrefix(r.URL.Path, "/vmkeep/") {
	case "expire-sessions":
		for c := range h.seen {
			h.expired[c] = true
		}
		writeJSON(w, map[string]int{"expired": len(h.seen)})
	case "answer-limit":
		if v := r.URL.Query().Get("bytes"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				http.Error(w, "bad bytes", http.StatusBadRequest)
				return
			}
			h.answerLimit = n
		}
		writeJSON(w, map[string]int64{"answer_limit": h.answerLimit})
	case "fail-quiesce":
		h.failQuiesce = r.URL.Query().Get("on") == "1"
		writeJSON(w, map[string]bool{"fail_quiesce": h.failQuiesce})
	case "qcda-calls":
		writeJSON(w, map[string]int{"calls": h.qcdaCalls})
	case "disks":
		h.sizeAllDisks()
		writeJSON(w, h.listDisks(r.URL.Query().Get("vm")))
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

type diskRef struct {
	VM       string `json:"vm"`
	Moref    string `json:"moref"`
	Key      int32  `json:"key"`
	FileName string `json:"file_name"`
	FlatPath string `json:"flat_path"`
	Capacity int64  `json:"capacity"`
}

func (h *harness) vmDisks(vm *simulator.VirtualMachine) []diskRef {
	var out []diskRef
	if vm.Config == nil {
		return nil
	}
	for _, dev := range vm.Config.Hardware.Device {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		flat, ok := h.flatPath(b.FileName)
		if !ok {
			continue
		}
		capacity := disk.CapacityInBytes
		if capacity == 0 {
			capacity = disk.CapacityInKB * 1024
		}
		out = append(out, diskRef{VM: vm.Name, Moref: vm.Self.Value, Key: disk.Key, FileName: b.FileName, FlatPath: flat, Capacity: capacity})
	}
	return out
}

func (h *harness) listDisks(name string) []diskRef {
	out := []diskRef{}
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		if name != "" && vm.Name != name && vm.Self.Value != name {
			continue
		}
		out = append(out, h.vmDisks(vm)...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Moref != out[j].Moref {
			return out[i].Moref < out[j].Moref
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// flatPath maps "[ds] dir/disk.vmdk" to the absolute path of dir/disk-flat.vmdk.
func (h *harness) flatPath(fileName string) (string, bool) {
	ds, rel, ok := splitDsPath(fileName)
	if !ok {
		return "", false
	}
	dir, ok := h.dsDirs[ds]
	if !ok {
		return "", false
	}
	return filepath.Join(dir, flatRel(rel)), true
}

func splitDsPath(p string) (ds, rel string, ok bool) {
	if !strings.HasPrefix(p, "[") {
		return "", "", false
	}
	end := strings.Index(p, "]")
	if end < 0 {
		return "", "", false
	}
	return p[1:end], strings.TrimSpace(p[end+1:]), true
}

func flatRel(rel string) string {
	if strings.HasSuffix(rel, ".vmdk") && !strings.HasSuffix(rel, "-flat.vmdk") {
		return strings.TrimSuffix(rel, ".vmdk") + "-flat.vmdk"
	}
	return rel
}

// sizeAllDisks makes every live flat file at least as long as its disk.
func (h *harness) sizeAllDisks() {
	for _, e := range simulator.Map.All("VirtualMachine") {
		for _, d := range h.vmDisks(e.(*simulator.VirtualMachine)) {
			st, err := os.Stat(d.FlatPath)
			if err == nil && st.Size() >= d.Capacity {
				continue
			}
			if err := os.MkdirAll(filepath.Dir(d.FlatPath), 0o755); err != nil {
				log.Printf("mkdir: %v", err)
				continue
			}
			f, err := os.OpenFile(d.FlatPath, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				log.Printf("open %s: %v", d.FlatPath, err)
				continue
			}
			if err := f.Truncate(d.Capacity); err != nil {
				log.Printf("truncate %s: %v", d.FlatPath, err)
			}
			_ = f.Close()
		}
	}
}

func cbtEnabled(vm *simulator.VirtualMachine) bool {
	return vm.Config != nil && vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
}

// noteCBT resets the tracking epoch of a VM's disks when CBT was switched.
func (h *harness) noteCBT(vm *simulator.VirtualMachine) {
	on := cbtEnabled(vm)
	if h.cbtOn[vm.Self.Value] == on {
		return
	}
	h.cbtOn[vm.Self.Value] = on
	prefix := vm.Self.Value + "/"
	for k := range h.tracks {
		if strings.HasPrefix(k, prefix) {
			delete(h.tracks, k)
		}
	}
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// copyFile copies src to dst sparsely (all-zero blocks are skipped).
func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	buf := make([]byte, blockSize)
	var off int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if !allZero(buf[:n]) {
				if _, werr := out.WriteAt(buf[:n], off); werr != nil {
					return 0, werr
				}
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if err := out.Truncate(off); err != nil {
		return 0, err
	}
	return off, out.Sync()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// digest reads a file in 64 KiB blocks; the file is treated as size bytes long.
func digest(path string, size int64) ([]block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	nblocks := (size + blockSize - 1) / blockSize
	out := make([]block, nblocks)
	buf := make([]byte, blockSize)
	for i := int64(0); i < nblocks; i++ {
		want := int64(blockSize)
		if rest := size - i*blockSize; rest < want {
			want = rest
		}
		b := buf[:want]
		n, err := f.ReadAt(b, i*blockSize)
		if err != nil && err != io.EOF {
			return nil, err
		}
		for j := n; j < len(b); j++ {
			b[j] = 0
		}
		out[i] = block{sum: sha256.Sum256(b), nonZero: !allZero(b)}
	}
	return out, nil
}

// freeze copies each disk of the VM for the new snapshot and, with CBT on,
// records the content under a new changeId set on the snapshot's backings.
func (h *harness) freeze(vm *simulator.VirtualMachine, snapRef types.ManagedObjectReference) error {
	snap, ok := simulator.Map.Get(snapRef).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return fmt.Errorf("snapshot %s not found", snapRef.Value)
	}
	cbt := cbtEnabled(vm)
	h.noteCBT(vm)
	disks := map[int32]*frozenDisk{}
	changeIDs := map[int32]string{}
	for _, d := range h.vmDisks(vm) {
		ds, rel, _ := splitDsPath(d.FileName)
		dst := filepath.Join(h.dsDirs[ds], ".vmkeep-snapshots", snapRef.Value, flatRel(rel))
		if _, err := copyFile(d.FlatPath, dst); err != nil {
			return err
		}
		blocks, err := digest(dst, d.Capacity)
		if err != nil {
			return err
		}
		disks[d.Key] = &frozenDisk{live: d.FlatPath, frozen: dst, blocks: blocks, size: d.Capacity}
		if cbt {
			key := vm.Self.Value + "/" + strconv.Itoa(int(d.Key))
			t := h.tracks[key]
			if t == nil {
				t = &track{epoch: newUUID(), hist: map[int][]block{}}
				h.tracks[key] = t
			}
			t.seq++
			t.hist[t.seq] = blocks
			changeIDs[d.Key] = fmt.Sprintf("%s/%d", t.epoch, t.seq)
		}
	}
	h.frozen[snapRef.Value] = disks
	if !cbt {
		return nil
	}
	// The snapshot's config shares its device slice with the VM: give both
	// their own copies before setting changeId.
	snap.Config.Hardware.Device = withChangeIDs(snap.Config.Hardware.Device, changeIDs)
	vm.Config.Hardware.Device = withChangeIDs(vm.Config.Hardware.Device, changeIDs)
	return nil
}

func withChangeIDs(devs []types.BaseVirtualDevice, ids map[int32]string) []types.BaseVirtualDevice {
	out := make([]types.BaseVirtualDevice, len(devs))
	copy(out, devs)
	for i, dev := range out {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		id, ok := ids[disk.Key]
		if !ok {
			continue
		}
		nd := *disk
		nb := *b
		nb.ChangeId = id
		nd.Backing = &nb
		out[i] = &nd
	}
	return out
}

func (h *harness) revert(snapRef types.ManagedObjectReference) {
	for _, d := range h.frozen[snapRef.Value] {
		if _, err := copyFile(d.frozen, d.live); err != nil {
			log.Printf("revert %s: %v", d.live, err)
		}
	}
}

func (h *harness) dropRemovedSnapshots() {
	for ref, disks := range h.frozen {
		if simulator.Map.Get(types.ManagedObjectReference{Type: "VirtualMachineSnapshot", Value: ref}) != nil {
			continue
		}
		for _, d := range disks {
			_ = os.Remove(d.frozen)
		}
		for _, dir := range h.dsDirs {
			_ = os.RemoveAll(filepath.Join(dir, ".vmkeep-snapshots", ref))
		}
		delete(h.frozen, ref)
	}
}

type area struct{ start, length int64 }

func (h *harness) queryChangedDiskAreas(w http.ResponseWriter, body []byte) {
	h.qcdaCalls++
	method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		writeFault(w, err.Error(), "InvalidRequest", "")
		return
	}
	req, ok := method.Body.(*types.QueryChangedDiskAreas)
	if !ok {
		writeFault(w, "bad request body", "InvalidRequest", "")
		return
	}
	vm, ok := simulator.Map.Get(req.This).(*simulator.VirtualMachine)
	if !ok {
		writeFault(w, "The object has already been deleted or has not been completely created", "ManagedObjectNotFound",
			fmt.Sprintf(`<obj type="%s">%s</obj>`, xmlEscape(req.This.Type), xmlEscape(req.This.Value)))
		return
	}
	if !cbtEnabled(vm) {
		writeFault(w, "Change tracking is not enabled for this virtual machine", "FileFault", "<file></file>")
		return
	}
	var blocks []block
	var capacity int64
	var fileName string
	if req.Snapshot != nil {
		disks, ok := h.frozen[req.Snapshot.Value]
		if !ok {
			writeFault(w, "The object has already been deleted or has not been completely created", "ManagedObjectNotFound",
				fmt.Sprintf(`<obj type="VirtualMachineSnapshot">%s</obj>`, xmlEscape(req.Snapshot.Value)))
			return
		}
		d, ok := disks[req.DeviceKey]
		if !ok {
			writeFault(w, "A specified parameter was not correct: deviceKey", "InvalidArgument", "<invalidProperty>deviceKey</invalidProperty>")
			return
		}
		blocks, capacity, fileName = d.blocks, d.size, d.frozen
	} else {
		var found *diskRef
		for _, d := range h.vmDisks(vm) {
			if d.Key == req.DeviceKey {
				dd := d
				found = &dd
			}
		}
		if found == nil {
			writeFault(w, "A specified parameter was not correct: deviceKey", "InvalidArgument", "<invalidProperty>deviceKey</invalidProperty>")
			return
		}
		blocks, err = digest(found.FlatPath, found.Capacity)
		if err != nil {
			writeFault(w, err.Error(), "FileFault", "<file>"+xmlEscape(found.FileName)+"</file>")
			return
		}
		capacity, fileName = found.Capacity, found.FileName
	}
	if req.StartOffset < 0 || req.StartOffset >= capacity {
		writeFault(w, "A specified parameter was not correct: startOffset", "InvalidArgument", "<invalidProperty>startOffset</invalidProperty>")
		return
	}
	var changed []bool
	if req.ChangeId == "*" {
		changed = make([]bool, len(blocks))
		for i, b := range blocks {
			changed[i] = b.nonZero
		}
	} else {
		t := h.tracks[vm.Self.Value+"/"+strconv.Itoa(int(req.DeviceKey))]
		slash := strings.LastIndex(req.ChangeId, "/")
		var old []block
		if t != nil && slash > 0 && req.ChangeId[:slash] == t.epoch {
			if seq, err := strconv.Atoi(req.ChangeId[slash+1:]); err == nil {
				old = t.hist[seq]
			}
		}
		if old == nil {
			writeFault(w, fmt.Sprintf("Error caused by file %s: changeId %q is not valid", fileName, req.ChangeId), "FileFault",
				"<file>"+xmlEscape(fileName)+"</file>")
			return
		}
		changed = make([]bool, len(blocks))
		for i, b := range blocks {
			changed[i] = i >= len(old) || old[i].sum != b.sum
		}
	}
	end := capacity
	if h.answerLimit > 0 && req.StartOffset+h.answerLimit < end {
		end = req.StartOffset + h.answerLimit
	}
	var areas []area
	for i, c := range changed {
		if !c {
			continue
		}
		s, e := int64(i)*blockSize, int64(i+1)*blockSize
		if e > capacity {
			e = capacity
		}
		if s < req.StartOffset {
			s = req.StartOffset
		}
		if e > end {
			e = end
		}
		if s >= e {
			continue
		}
		if n := len(areas); n > 0 && areas[n-1].start+areas[n-1].length == s {
			areas[n-1].length += e - s
		} else {
			areas = append(areas, area{s, e - s})
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "<QueryChangedDiskAreasResponse xmlns=\"urn:vim25\"><returnval><startOffset>%d</startOffset><length>%d</length>",
		req.StartOffset, end-req.StartOffset)
	for _, a := range areas {
		fmt.Fprintf(&sb, "<changedArea><start>%d</start><length>%d</length></changedArea>", a.start, a.length)
	}
	sb.WriteString("</returnval></QueryChangedDiskAreasResponse>")
	writeEnvelope(w, http.StatusOK, sb.String())
}

// findAllByUuid answers SearchIndex.FindAllByUuid: the list may be empty,
// and every match is returned (cloned VMs share a BIOS UUID).
func findAllByUuid(w http.ResponseWriter, body []byte) {
	method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		writeFault(w, err.Error(), "InvalidRequest", "")
		return
	}
	req, ok := method.Body.(*types.FindAllByUuid)
	if !ok {
		writeFault(w, "bad request body", "InvalidRequest", "")
		return
	}
	instance := req.InstanceUuid != nil && *req.InstanceUuid
	kind := "HostSystem"
	if req.VmSearch {
		kind = "VirtualMachine"
	}
	var refs []types.ManagedObjectReference
	for _, e := range simulator.Map.All(kind) {
		var id string
		switch o := e.(type) {
		case *simulator.VirtualMachine:
			if o.Config == nil {
				continue
			}
			id = o.Config.Uuid
			if instance {
				id = o.Config.InstanceUuid
			}
		case *simulator.HostSystem:
			if o.Summary.Hardware != nil {
				id = o.Summary.Hardware.Uuid
			}
		}
		if id != req.Uuid || (req.Datacenter != nil && !inDatacenter(e, *req.Datacenter)) {
			continue
		}
		refs = append(refs, e.Reference())
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Value < refs[j].Value })
	var sb strings.Builder
	sb.WriteString(`<FindAllByUuidResponse xmlns="urn:vim25">`)
	for _, r := range refs {
		fmt.Fprintf(&sb, `<returnval type="%s">%s</returnval>`, xmlEscape(r.Type), xmlEscape(r.Value))
	}
	sb.WriteString(`</FindAllByUuidResponse>`)
	writeEnvelope(w, http.StatusOK, sb.String())
}

// inDatacenter reports whether dc is among e's ancestors.
func inDatacenter(e mo.Entity, dc types.ManagedObjectReference) bool {
	for p := e.Entity().Parent; p != nil; {
		if *p == dc {
			return true
		}
		parent, ok := simulator.Map.Get(*p).(mo.Entity)
		if !ok {
			return false
		}
		p = parent.Entity().Parent
	}
	return false
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func writeEnvelope(w http.ResponseWriter, status int, inner string) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`+
		`<soapenv:Body>%s</soapenv:Body></soapenv:Envelope>`, inner)
}

// writeFault answers a SOAP fault shaped like vCenter's: detail/<Type>Fault xsi:type=Type.
func writeFault(w http.ResponseWriter, msg, kind, detail string) {
	writeEnvelope(w, http.StatusInternalServerError, fmt.Sprintf(
		`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring><detail><%sFault xmlns="urn:vim25" xsi:type="%s">%s</%sFault></detail></soapenv:Fault>`,
		xmlEscape(msg), kind, kind, detail, kind))
}
