import XCTest
@testable import Control
import IPVS

final class JSONTests: XCTestCase {
    func testStringEscaping() {
        XCTAssertEqual(AdmJSON.string("plain"), "\"plain\"")
        XCTAssertEqual(AdmJSON.string("a\"b\\c"), "\"a\\\"b\\\\c\"")
        XCTAssertEqual(AdmJSON.string("\n\r\t\u{08}\u{0C}"), "\"\\n\\r\\t\\b\\f\"")
        XCTAssertEqual(AdmJSON.string("\u{01}\u{1F}\u{7F}"), "\"\\u0001\\u001f\\u007f\"")
        XCTAssertEqual(AdmJSON.string("é✓"), "\"é✓\"")
    }

    func testServicesDocument() throws {
        let t = specExampleTable()
        let stats = StatsSource(service: { _ in StatsCounters(conns: 1, inPackets: 2, outPackets: 3, inBytes: 4, outBytes: 5) },
                                destRate: { _, _ in RateCounters(cps: 6, inPPS: 7, outPPS: 8, inBPS: 9, outBPS: 10) })
        let (out, _, rc) = adm("-L --json -t 192.168.10.100:80", t, env: testEnv(stats: stats))
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(out,
            "{\"version\":\"1.2.1\",\"size\":4096,\"services\":[{\"family\":\"inet\",\"protocol\":\"tcp\"," +
            "\"address\":\"192.168.10.100\",\"port\":80,\"fwmark\":0,\"scheduler\":\"wlc\",\"flags\":[]," +
            "\"persistent\":false,\"timeout\":0,\"netmask\":\"255.255.255.255\",\"pe\":null,\"ops\":false," +
            "\"stats\":{\"conns\":1,\"inpkts\":2,\"outpkts\":3,\"inbytes\":4,\"outbytes\":5}," +
            "\"rates\":{\"cps\":0,\"inpps\":0,\"outpps\":0,\"inbps\":0,\"outbps\":0},\"dests\":[" +
            "{\"address\":\"10.0.0.11\",\"port\":80,\"family\":\"inet\",\"forward\":\"masq\",\"weight\":1," +
            "\"upper_threshold\":0,\"lower_threshold\":0,\"active_conns\":2,\"inactive_conns\":1,\"persistent_conns\":0," +
            "\"available\":true,\"overloaded\":false,\"tunnel\":null," +
            "\"stats\":{\"conns\":0,\"inpkts\":0,\"outpkts\":0,\"inbytes\":0,\"outbytes\":0}," +
            "\"rates\":{\"cps\":6,\"inpps\":7,\"outpps\":8,\"inbps\":9,\"outbps\":10}}," +
            "{\"address\":\"10.0.0.12\",\"port\":80,\"family\":\"inet\",\"forward\":\"masq\",\"weight\":2," +
            "\"upper_threshold\":0,\"lower_threshold\":0,\"active_conns\":5,\"inactive_conns\":0,\"persistent_conns\":0," +
            "\"available\":true,\"overloaded\":false,\"tunnel\":null," +
            "\"stats\":{\"conns\":0,\"inpkts\":0,\"outpkts\":0,\"inbytes\":0,\"outbytes\":0}," +
            "\"rates\":{\"cps\":6,\"inpps\":7,\"outpps\":8,\"inbps\":9,\"outbps\":10}}]}]}\n")
    }

    func testAllServicesSortedWithFwmarkAndTunnel() {
        let out = adm("-Ln --json", specExampleTable()).0
        let tcp = out.range(of: "\"port\":80,\"fwmark\":0")!.lowerBound
        let udp = out.range(of: "\"port\":53,\"fwmark\":0")!.lowerBound
        let fwm = out.range(of: "\"protocol\":null,\"address\":null,\"port\":0,\"fwmark\":5")!.lowerBound
        XCTAssertTrue(tcp < udp && udp < fwm)
        XCTAssertTrue(out.contains("\"scheduler\":\"sh\",\"flags\":[\"sh-port\"]"))
        XCTAssertTrue(out.contains("\"scheduler\":\"rr\",\"flags\":[],\"persistent\":true,\"timeout\":360"))
        XCTAssertTrue(out.contains("\"forward\":\"tunnel\""))
        XCTAssertTrue(out.contains("\"tunnel\":{\"type\":\"ipip\",\"port\":0,\"csum\":\"nocsum\"}"))
        XCTAssertTrue(out.hasSuffix("]}\n"))
        XCTAssertEqual(out.filter { $0 == "\n" }.count, 1)
    }

    func testConnectionsTimeoutsDaemons() {
        let row = ConnectionRow(proto: .tcp, expiresSeconds: 898, stateName: "ESTABLISHED",
                                client: (v4("172.16.0.9"), 40312), virtual: (v4("192.168.10.100"), 80),
                                dest: (IPAddress("2001:db8::1")!, 80))
        XCTAssertEqual(adm("-L -c --json", IPVSTable(), env: testEnv(connections: [row])).0,
            "{\"connections\":[{\"protocol\":\"tcp\",\"expires\":898,\"state\":\"ESTABLISHED\"," +
            "\"client\":{\"address\":\"172.16.0.9\",\"port\":40312}," +
            "\"virtual\":{\"address\":\"192.168.10.100\",\"port\":80}," +
            "\"dest\":{\"address\":\"2001:db8::1\",\"port\":80},\"pe_name\":null,\"pe_data\":null}]}\n")
        XCTAssertEqual(adm("-L --timeout --json", IPVSTable()).0, "{\"tcp\":900,\"tcpfin\":120,\"udp\":300}\n")
        let env = testEnv()
        adm("--start-daemon master", IPVSTable(), env: env)
        XCTAssertEqual(adm("-L --daemon --json", IPVSTable(), env: env).0,
            "{\"daemons\":[{\"state\":\"master\",\"mcast_interface\":\"eth0\",\"syncid\":0,\"maxlen\":1472," +
            "\"group\":\"224.0.0.81\",\"port\":8848,\"ttl\":1}]}\n")
        XCTAssertEqual(adm("-L --json", IPVSTable()).0, "{\"version\":\"1.2.1\",\"size\":4096,\"services\":[]}\n")
    }

    func testJSONIsOnlyForList() {
        assertRefused("-S --json", "Illegal 'json' option with the 'save' command")
        assertRefused("-C --json", "Illegal 'json' option with the 'flush' command")
    }
}
