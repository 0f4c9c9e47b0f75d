// The operations `ipvsadm` performs on a service table. `IPVSTable` (module
// IPVS) conforms; tests may use a small fake. Errors carry the kernel's errno
// meaning (IPVSError), which `execute` turns into libipvs's messages.

import IPVS

public protocol IPVSAdministrable: AnyObject {
    @discardableResult
    func addService(_ spec: ServiceSpec) throws(IPVSError) -> Service
    func editService(_ spec: ServiceSpec) throws(IPVSError)
    func deleteService(_ key: ServiceKey) throws(IPVSError)
    func flush() throws(IPVSError)
    @discardableResult
    func addDest(to key: ServiceKey, _ spec: DestSpec) throws(IPVSError) -> Dest
    func editDest(in key: ServiceKey, _ spec: DestSpec) throws(IPVSError)
    func deleteDest(from key: ServiceKey, addr: IPAddress, port: UInt16) throws(IPVSError)
    /// Zero the counters of one service, or of every service (nil).
    func zero(_ key: ServiceKey?) throws(IPVSError)
    var timeouts: TimeoutSettings { get }
    /// `--set tcp tcpfin udp` in seconds; 0 leaves a value unchanged.
    func setTimeouts(tcp: Int, tcpfin: Int, udp: Int) throws(IPVSError)
    func service(for key: ServiceKey) -> Service?
    /// Every service in kernel hash order (what `--nosort` prints).
    var services: [Service] { get }
}

extension IPVSTable: IPVSAdministrable {}

extension StatsSource {
    /// Counters as the table shows them (raw minus the `-Z` zero point) and
    /// the rates of each object's estimator.
    public static func table(_ t: IPVSTable) -> StatsSource {
        StatsSource(
            service: { t.shownStats(.service($0)) },
            dest: { _, d in t.shownStats(.dest(d)) },
            serviceRate: { RateCounters($0.estimator.rates) },
            destRate: { _, d in RateCounters(d.estimator.rates) })
    }
}

extension RateCounters {
    public init(_ r: RateEstimator.Rates) {
        self.init(cps: r.cps, inPPS: r.inpps, outPPS: r.outpps, inBPS: r.inbps, outBPS: r.outbps)
    }
}
