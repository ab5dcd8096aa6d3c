// A DHT node configured as Spegel configures its router (pkg/routing/libp2p): go-libp2p over TCP only,
// loopback addresses filtered from what it announces, go-libp2p-kad-dht in server mode with protocol prefix
// "/spegel", keys as CIDv1 raw sha2-256 of the key string. Spegel's own module is not on the Go module proxy,
// so this reproduces its DHT configuration with the same libraries and versions. Driven over stdin/stdout:
//
//	id                 → {"ID":"12D3Koo…","Addrs":["/ip4/…/tcp/…"]}
//	connect <maddr>    → ok
//	peers              → <number of peers in the routing table>
//	provide <key>      → ok
//	find <key>         → [{"ID":"…","Addrs":[…]}]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	mc "github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"
)

func createCid(key string) (cid.Cid, error) {
	pref := cid.Prefix{Version: 1, Codec: uint64(mc.Raw), MhType: mh.SHA2_256, MhLength: -1}
	return pref.Sum([]byte(key))
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: spegel-go <listen multiaddr>")
		os.Exit(2)
	}
	ctx := context.Background()
	host, err := libp2p.New(
		libp2p.ListenAddrStrings(os.Args[1]),
		libp2p.DisableIdentifyAddressDiscovery(),
		libp2p.AddrsFactory(func(addrs []ma.Multiaddr) []ma.Multiaddr {
			filtered := []ma.Multiaddr{}
			for _, addr := range addrs {
				if manet.IsIPLoopback(addr) {
					continue
				}
				filtered = append(filtered, addr)
			}
			return filtered
		}),
		libp2p.ChainOptions(libp2p.NoTransports, libp2p.Transport(tcp.NewTCPTransport)),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kdht, err := dht.New(host, dht.Mode(dht.ModeServer), dht.ProtocolPrefix("/spegel"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) == 0 {
			continue
		}
		arg := ""
		if len(fields) > 1 {
			arg = fields[1]
		}
		switch fields[0] {
		case "id":
			_ = out.Encode(peer.AddrInfo{ID: host.ID(), Addrs: host.Addrs()})
		case "connect":
			info, err := peer.AddrInfoFromString(arg)
			if err == nil {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err = host.Connect(cctx, *info)
				cancel()
			}
			if err != nil {
				_ = out.Encode(map[string]string{"error": err.Error()})
				continue
			}
			_ = out.Encode("ok")
		case "peers":
			_ = out.Encode(kdht.RoutingTable().Size())
		case "provide":
			c, err := createCid(arg)
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err = kdht.Provide(pctx, c, true)
				cancel()
			}
			if err != nil {
				_ = out.Encode(map[string]string{"error": err.Error()})
				continue
			}
			_ = out.Encode("ok")
		case "find":
			c, err := createCid(arg)
			if err != nil {
				_ = out.Encode(map[string]string{"error": err.Error()})
				continue
			}
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			found := []peer.AddrInfo{}
			for info := range kdht.FindProvidersAsync(fctx, c, 0) {
				found = append(found, info)
			}
			cancel()
			_ = out.Encode(found)
		default:
			_ = out.Encode(map[string]string{"error": "unknown command " + fields[0]})
		}
	}
}
