// swift-tools-version:5.9
// Switchyard: IPVS semantics on a DPDK poll-mode data plane.
//
// Module boundaries (see README.md): Wire and IPVS never import DPDK, so
// almost all logic is unit-testable with `swift test`; only Dataplane and the
// executable link the C shim over DPDK.
import PackageDescription

// Debian's libdpdk.pc does not parse in SwiftPM, so the include paths and the
// ISA level DPDK's inline headers need (SSSE3 for the mempool code) are given
// here, for clang and for the Swift importer alike.
let dpdkIncludes = ["/usr/include/dpdk", "/usr/include/x86_64-linux-gnu/dpdk"]
let dpdkCFlags = dpdkIncludes.map { "-I\($0)" } + ["-march=corei7", "-Wno-deprecated-declarations"]
let dpdkSwiftFlags = dpdkCFlags.flatMap { ["-Xcc", $0] }
let dpdkLibraries = [
    "rte_ethdev", "rte_mbuf", "rte_mempool", "rte_ring", "rte_eal", "rte_net",
    "rte_kvargs", "rte_telemetry", "rte_hash", "rte_lpm", "rte_ip_frag",
].map { LinkerSetting.linkedLibrary($0) }

let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo", "-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Switchyard",
    products: [
        .executable(name: "switchyard", targets: ["switchyard"]),
    ],
    targets: [
        .target(
            name: "CDPDK",
            path: "CShims",
            cSettings: [.unsafeFlags(dpdkCFlags + ["-O3"])],
            linkerSettings: dpdkLibraries
        ),
        .target(name: "Wire", path: "Sources/Wire", swiftSettings: optimize),
        // Prefetch and SIMD signature compare for the IPVS fast path (header-only, no DPDK).
        .target(name: "CIntrinsics", path: "CIntrinsics"),
        .target(name: "IPVS", dependencies: ["Wire", "CIntrinsics"], path: "Sources/IPVS", swiftSettings: optimize),
        .target(
            name: "Dataplane",
            dependencies: ["CDPDK", "Wire", "IPVS"],
            path: "Sources/Dataplane",
            swiftSettings: optimize + [.unsafeFlags(dpdkSwiftFlags)]
        ),
        .target(name: "Control", dependencies: ["IPVS"], path: "Sources/Control",
                exclude: ["Agent"],   // switchyard-agent.py, the dynamic-feedback agent (not Swift)
                swiftSettings: optimize),
        .executableTarget(
            name: "switchyard",
            dependencies: ["CDPDK", "Wire", "IPVS", "Dataplane", "Control"],
            path: "Sources/switchyard",
            swiftSettings: optimize + [.unsafeFlags(dpdkSwiftFlags)]
        ),
        .testTarget(name: "WireTests", dependencies: ["Wire"], path: "Tests/WireTests"),
        .testTarget(name: "IPVSTests", dependencies: ["IPVS", "Wire", "CIntrinsics"], path: "Tests/IPVSTests"),
        .testTarget(name: "ControlTests", dependencies: ["Control", "IPVS"], path: "Tests/ControlTests"),
        .testTarget(
            name: "DataplaneTests",
            dependencies: ["CDPDK", "Wire", "IPVS"],
            path: "Tests/DataplaneTests",
            swiftSettings: [.unsafeFlags(dpdkSwiftFlags)]
        ),
    ]
)
