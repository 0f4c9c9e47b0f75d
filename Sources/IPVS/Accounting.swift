// Per-dest connection accounting (ip_vs_conn.c: ip_vs_bind_dest,
// ip_vs_unbind_dest; ip_vs_proto_tcp.c: set_tcp_state) and the OVERLOAD
// threshold rules. Called by the connection engine once per connection event.
//
// Thresholds compare active + inactive conns; templates (persistConns) are
// never part of that total.

extension Dest {
    /// active + inactive (templates excluded), `ip_vs_dest_totalconns`.
    @inlinable
    public var totalConns: Int64 { Int64(active) + Int64(inactive) }

    /// Connections and templates still pointing at this dest.
    public var referenceCount: Int64 { Int64(active) + Int64(inactive) + Int64(persistent) }

    /// A new connection (or template) is bound to this dest: it starts
    /// INACTIVE, so inactconns (or persistconns) grows; then the upper
    /// threshold may set OVERLOAD.
    public func bindConnection(isTemplate: Bool) {
        if isTemplate {
            persistConns.wrappingAdd(1, ordering: .relaxed)
        } else {
            inactiveConns.wrappingAdd(1, ordering: .relaxed)
        }
        let u = upperThreshold
        if u != 0 && totalConns >= Int64(u) {
            setFlag(.overload)
        }
    }

    /// A connection (or template) goes away. `wasInactive` is the conn's
    /// INACTIVE flag at that moment. Then OVERLOAD may clear: below the lower
    /// threshold if one is set, else below 3/4 of the upper one, else always.
    public func unbindConnection(isTemplate: Bool, wasInactive: Bool) {
        if isTemplate {
            persistConns.wrappingSubtract(1, ordering: .relaxed)
        } else if wasInactive {
            inactiveConns.wrappingSubtract(1, ordering: .relaxed)
        } else {
            activeConns.wrappingSubtract(1, ordering: .relaxed)
        }
        let l = lowerThreshold, u = upperThreshold
        if l != 0 {
            if totalConns < Int64(l) { clearFlag(.overload) }
        } else if u != 0 {
            if totalConns * 4 < Int64(u) * 3 { clearFlag(.overload) }
        } else {
            clearFlag(.overload)
        }
    }

    /// A conn whose INACTIVE flag was set enters an active state.
    public func moveToActive() {
        activeConns.wrappingAdd(1, ordering: .relaxed)
        inactiveConns.wrappingSubtract(1, ordering: .relaxed)
    }

    /// A conn whose INACTIVE flag was clear leaves the active states.
    public func moveToInactive() {
        activeConns.wrappingSubtract(1, ordering: .relaxed)
        inactiveConns.wrappingAdd(1, ordering: .relaxed)
    }

    /// The whole TCP transition rule of `set_tcp_state` for the counters:
    /// given the conn's INACTIVE flag and the new state, move the conn
    /// between the counters if needed and return the new INACTIVE flag.
    @inlinable
    public func accountTransition(inactive: Bool, to newState: TCPState) -> Bool {
        let act = newState.isActive
        if !inactive && !act {
            moveToInactive()
            return true
        }
        if inactive && act {
            moveToActive()
            return false
        }
        return inactive
    }
}
