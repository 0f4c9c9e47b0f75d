// The scheduler registry: names as ipvsadm takes them, and binding a fresh
// scheduler to a service (the kernel's init_service runs in each init).

public enum Schedulers {
    /// Every scheduler this build has (the kernel's ip_vs_* modules).
    public static let names: [String] = [
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos",
    ]

    /// "none": a service without a scheduler (every new conn finds no dest).
    public static let none = "none"

    /// Whether `name` is accepted by -s (a scheduler or "none").
    public static func isKnown(_ name: String) -> Bool {
        name == none || names.contains(name)
    }

    /// A scheduler bound to `service` in its current state, or nil for
    /// "none" and unknown names (tell them apart with `isKnown`).
    public static func make(_ name: String, for service: Service) -> Scheduler? {
        switch name {
        case "rr": return RRScheduler(service: service)
        case "wrr": return WRRScheduler(service: service)
        case "lc": return LCScheduler(service: service)
        case "wlc": return WLCScheduler(service: service)
        case "lblc": return LBLCScheduler(service: service)
        case "lblcr": return LBLCRScheduler(service: service)
        case "dh": return DHScheduler(service: service)
        case "sh": return SHScheduler(service: service)
        case "sed": return SEDScheduler(service: service)
        case "nq": return NQScheduler(service: service)
        case "mh": return MHScheduler(service: service)
        case "fo": return FOScheduler(service: service)
        case "ovf": return OVFScheduler(service: service)
        case "twos": return TWOSScheduler(service: service)
        default: return nil
        }
    }
}
