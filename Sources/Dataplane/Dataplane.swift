import CDPDK
public enum Dataplane { public static func hello() -> UInt64 { sy_rdtsc() } }
