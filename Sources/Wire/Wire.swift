// Wire: packet headers on raw bytes for the Switchyard data plane.
//
// Everything here works on `UnsafeRawPointer`/`UnsafeMutableRawPointer` plus
// a length, allocates nothing, and uses only trivial structs, so the data
// plane can call it per packet (most entry points are @inlinable).
//
// Contract: `parseFrame` is the only function that trusts nothing; it checks
// every read against `length` and every L4 read against the IP packet's own
// length. The rewriters (`NAT`, `IPHeader`, `Tunnel`, `ICMP`, `Fragmenter`,
// `ARP.makeReply`) take the `PacketInfo` that `parseFrame` returned `.ok` (or
// `.notIP` for ARP) for the same bytes and rely on its offsets; builders that
// write into a caller's buffer check `capacity` and return 0 when it is short.
//
//   parseFrame(p, length:, into:) -> ParseResult      Ethernet/VLAN/ARP/IPv4/IPv6/L4
//   Checksum.*                                         RFC 1071 sums, RFC 1624 updates
//   NAT.rewriteDestination / rewriteSource             LVS/NAT in place
//   IPHeader.decrementTTL / setTTL, MTU.check          forwarding steps
//   Ethernet.*, MACAddress                             L2
//   Tunnel.headerLength / mtu / encapsulate            LVS/TUN (IPIP, GUE, GRE)
//   ICMP.build*Error / buildTimeExceeded / buildTooBig / buildPortUnreachable
//   ICMP.parseEmbedded / rewriteRelatedInbound / rewriteRelatedOutbound / makeEchoReply
//   Fragmenter.fragmentCount / writeFragment           IPv4 fragmentation
//   ARP.*, NDP.*                                       neighbour messages
//   SCTP.crc32c / setChecksum                          SCTP NAT
