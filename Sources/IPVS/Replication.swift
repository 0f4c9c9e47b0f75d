// How the service table reaches the workers without locks on the packet path.
//
// The control side owns the master IPVSTable. Every change it makes is also
// described as a TableChange (an immutable value; Dest objects are shared,
// service settings are copied) and queued to each worker on a
// single-producer, single-consumer ring. A worker drains its ring between
// bursts and applies the changes, in order, to its own replica table. So a
// worker never waits for the control side, never sees a half-made change, and
// its schedulers get exactly the kernel's hook sequence (add/del/upd dest,
// init on a scheduler change); the active/inactive counters the schedulers
// read live in the shared Dest objects.

import Synchronization

/// A service's settings at the moment of a change.
public struct ServiceConfig: Sendable {
    public var key: ServiceKey
    public var id: UInt32
    public var schedulerName: String
    public var flags: ServiceFlags
    public var timeout: UInt32
    public var netmask: UInt32
    public var persistenceEngine: String?

    public init(_ s: Service) {
        key = s.key; id = s.id; schedulerName = s.schedulerName; flags = s.flags
        timeout = s.timeout; netmask = s.netmask; persistenceEngine = s.persistenceEngine
    }
}

public enum TableChange: @unchecked Sendable {
    case serviceAdded(ServiceConfig)
    case serviceEdited(ServiceConfig, schedulerChanged: Bool)
    case serviceDeleted(ServiceKey)
    case destAdded(ServiceKey, Dest)
    case destEdited(ServiceKey, Dest)
    case destDeleted(ServiceKey, Dest)
    case destPurged(UInt32)
    case timeouts(TimeoutSettings)
    case fwmarkMatch(mark: UInt32?, proto: IPProtocol, addr: IPAddress, port: UInt16)
}

/// Work the control side asks a worker to do at its next burst boundary.
public enum WorkerMessage: @unchecked Sendable {
    case change(TableChange)
    /// Copy the worker's connection entries into the request (for `-L -c`).
    case listConnections(ConnectionListRequest)
}

/// A request the worker fills and marks done; the control side waits for it.
public final class ConnectionListRequest: @unchecked Sendable {
    public var records: [Engine.ConnectionRecord] = []
    public let done = Atomic<Bool>(false)
    public init() {}
}

/// A bounded single-producer, single-consumer queue of messages. The
/// producer is the control thread, the consumer one worker; neither takes a
/// lock, and the consumer never waits.
public final class MessageRing: @unchecked Sendable {
    private let capacity: Int
    private let slots: UnsafeMutablePointer<WorkerMessage?>
    private let head = Atomic<Int>(0)   // next slot to read (consumer)
    private let tail = Atomic<Int>(0)   // next slot to write (producer)

    public init(capacity: Int = 1 << 14) {
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: nil, count: capacity)
    }

    /// False when full (the producer retries later).
    public func push(_ m: WorkerMessage) -> Bool {
        let t = tail.load(ordering: .relaxed)
        if t - head.load(ordering: .acquiring) >= capacity { return false }
        slots[t % capacity] = m
        tail.store(t + 1, ordering: .releasing)
        return true
    }

    /// One relaxed-cost check per poll loop turn.
    @inline(__always)
    public var isEmpty: Bool { head.load(ordering: .relaxed) == tail.load(ordering: .acquiring) }

    public func pop() -> WorkerMessage? {
        let h = head.load(ordering: .relaxed)
        if h == tail.load(ordering: .acquiring) { return nil }
        let m = slots[h % capacity]
        slots[h % capacity] = nil
        head.store(h + 1, ordering: .releasing)
        return m
    }

    public var count: Int { tail.load(ordering: .acquiring) - head.load(ordering: .acquiring) }
}
