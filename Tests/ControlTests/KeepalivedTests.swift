import XCTest
@testable import Control
import IPVS

/// keepalived.conf import: every directive, the equivalent ipvsadm rules
/// (compared as `-S -n` output), notices and errors with their lines.
final class KeepalivedTests: XCTestCase {
    /// A configuration touching every supported directive.
    static let full = """
    ! Configuration File for keepalived
    global_defs {
       router_id LVS_DEVEL
       notification_email {
         admin@example.com
       }
    }
    vrrp_instance VI_1 {
        state MASTER
        interface eth0
        virtual_ipaddress {
            192.168.10.100
        }
    }
    virtual_server 192.168.10.100 80 {
        delay_loop 6
        lb_algo wrr
        lb_kind NAT
        persistence_timeout 50
        persistence_granularity 255.255.255.0
        protocol TCP
        sorry_server 10.0.0.99 8080
        quorum 1
        real_server 10.0.0.11 80 {
            weight 3
            inhibit_on_failure
            uthreshold 100
            lthreshold 10
            HTTP_GET {
                url {
                  path /health
                  digest 9B3A0C85A887A256D6939DA88AABD8CD
                  status_code 200
                }
                url
                {
                  path /index.html
                  status_code 200-299 301
                }
                connect_timeout 3
                connect_port 8080
                bindto 10.0.0.1
                retry 3
                delay_before_retry 2
            }
        }
        real_server 10.0.0.12 80 {
            weight 1
            TCP_CHECK {
                connect_timeout 2
                nb_get_retry 2
                rise 2
                connect_ip 10.0.0.112
            }
        }
    }
    virtual_server 192.168.10.100 443 {
        lvs_sched rr
        lvs_method DR
        connect_timeout 4
        real_server 10.0.0.21 8443 {   # DR forces the port to 443
            SSL_GET {
                url {
                    path /
                    virtualhost www.example.com
                }
            }
        }
    }
    virtual_server 192.168.10.100 53 {
        protocol UDP
        lb_algo sh
        sh-port
        lb_kind TUN
        ops
        delay_loop 2.5
        real_server 10.0.0.31 53 {
            MISC_CHECK {
                misc_path "/usr/local/bin/check_dns 10.0.0.31"
                misc_timeout 5
                misc_dynamic
            }
            UDP_CHECK {
                require_reply
                payload hello
            }
        }
    }
    virtual_server fwmark 5 {
        lb_algo wlc
        lb_kind DR
        retry 4
        real_server 10.0.0.41 {
            weight 2
            PING_CHECK {
            }
        }
        real_server 10.0.0.42 {
            fall 3
        }
    }
    """

    static let fullEquivalent = """
    -A -t 192.168.10.100:80 -s wrr -p 50 -M 255.255.255.0
    -a -t 192.168.10.100:80 -r 10.0.0.11:80 -m -w 3 -x 100 -y 10
    -a -t 192.168.10.100:80 -r 10.0.0.12:80 -m -w 1
    -A -t 192.168.10.100:443 -s rr
    -a -t 192.168.10.100:443 -r 10.0.0.21:443 -g -w 1
    -A -u 192.168.10.100:53 -s sh -o -b sh-port
    -a -u 192.168.10.100:53 -r 10.0.0.31:53 -i -w 1
    -A -f 5 -s wlc
    -a -f 5 -r 10.0.0.41 -g -w 2
    -a -f 5 -r 10.0.0.42 -g -w 1
    """

    func parse(_ text: String, files: [String: String] = [:]) throws -> KeepalivedConfig {
        let reader = ConfigFileReader(read: { files[$0] }, glob: { p in
            if p.hasSuffix("*.conf") {
                let dir = String(p.dropLast("*.conf".count))
                return files.keys.filter { $0.hasPrefix(dir) && $0.hasSuffix(".conf") }.sorted()
            }
            return files[p] != nil ? [p] : []
        })
        return try KeepalivedConfig.parse(text, file: "keepalived.conf", reader: reader)
    }

    func error(_ text: String, files: [String: String] = [:]) -> KeepalivedError? {
        do {
            _ = try parse(text, files: files).plan()
            return nil
        } catch let e as KeepalivedError {
            return e
        } catch {
            XCTFail("unexpected \(error)")
            return nil
        }
    }

    func saveOf(rules: String) -> String {
        let t = IPVSTable()
        if case .failure(let e) = applyRules(rules, to: t, environment: testEnv()) { XCTFail("\(e)") }
        return IpvsadmFormat.save(t.services, numeric: true, names: testNames)
    }

    func saveOf(plan: KeepalivedPlan) -> String {
        let t = IPVSTable()
        for c in plan.initialCommands {
            var o = "", e = ""
            XCTAssertEqual(execute(c, on: t, environment: testEnv(), output: &o, errors: &e), 0, "\(IpvsadmWords.line(c)): \(e)")
        }
        return IpvsadmFormat.save(t.services, numeric: true, names: testNames)
    }

    func testFullConfigImportsToTheEquivalentRules() throws {
        let plan = try parse(Self.full).plan()
        XCTAssertEqual(saveOf(plan: plan), saveOf(rules: Self.fullEquivalent))
        XCTAssertEqual(plan.saveText(), saveOf(rules: Self.fullEquivalent))
        // The commands' own text replays to the same table.
        let lines = plan.initialCommands.map(IpvsadmWords.line).joined(separator: "\n")
        XCTAssertEqual(saveOf(rules: lines), saveOf(rules: Self.fullEquivalent))
    }

    func testFullConfigDirectives() throws {
        let cfg = try parse(Self.full)
        XCTAssertEqual(cfg.virtualServers.count, 4)
        let web = cfg.virtualServers[0]
        XCTAssertEqual(web.key, .address(proto: .tcp, addr: v4("192.168.10.100"), port: 80))
        XCTAssertEqual(web.delayLoop, 6)
        XCTAssertEqual(web.scheduler, "wrr")
        XCTAssertEqual(web.forward, .masq)
        XCTAssertEqual(web.persistenceTimeout, 50)
        XCTAssertEqual(web.persistenceGranularity, "255.255.255.0")
        XCTAssertEqual(web.sorryServer?.address, v4("10.0.0.99"))
        XCTAssertEqual(web.sorryServer?.port, 8080)
        XCTAssertEqual(web.realServers.count, 2)

        let rs1 = web.realServers[0]
        XCTAssertEqual(rs1.weight, 3)
        XCTAssertTrue(rs1.inhibitOnFailure)
        XCTAssertEqual(rs1.upperThreshold, 100)
        XCTAssertEqual(rs1.lowerThreshold, 10)
        let http = rs1.checkers[0]
        XCTAssertEqual(http.kind, .http)
        XCTAssertEqual(http.urls.count, 2)
        XCTAssertEqual(http.urls[0].path, "/health")
        XCTAssertEqual(http.urls[0].digest, "9b3a0c85a887a256d6939da88aabd8cd")
        XCTAssertEqual(http.urls[0].statusCodes, [200...200])
        XCTAssertEqual(http.urls[1].statusCodes, [200...299, 301...301])
        XCTAssertTrue(http.urls[1].accepts(301))
        XCTAssertFalse(http.urls[1].accepts(302))
        XCTAssertTrue(URLCheck().accepts(204))
        XCTAssertFalse(URLCheck().accepts(404))
        XCTAssertEqual(http.connectTimeout, 3)
        XCTAssertEqual(http.connectPort, 8080)
        XCTAssertEqual(http.bindTo, v4("10.0.0.1"))
        XCTAssertEqual(http.fall, 3)
        XCTAssertEqual(http.rise, 1)
        XCTAssertEqual(http.delayBeforeRetry, 2)
        XCTAssertEqual(http.delayLoop, 6)

        let tcp = web.realServers[1].checkers[0]
        XCTAssertEqual(tcp.kind, .tcp)
        XCTAssertEqual(tcp.connectTimeout, 2)
        XCTAssertEqual(tcp.fall, 2)
        XCTAssertEqual(tcp.rise, 2)
        XCTAssertEqual(tcp.connectIP, v4("10.0.0.112"))
        XCTAssertEqual(tcp.delayBeforeRetry, 1)

        let https = cfg.virtualServers[1]
        XCTAssertEqual(https.scheduler, "rr")
        XCTAssertEqual(https.forward, .droute)
        XCTAssertEqual(https.delayLoop, 60)
        let ssl = https.realServers[0].checkers[0]
        XCTAssertEqual(ssl.kind, .https)
        XCTAssertEqual(ssl.connectTimeout, 4)    // inherited from the virtual_server
        XCTAssertEqual(ssl.urls[0].virtualhost, "www.example.com")

        let dns = cfg.virtualServers[2]
        XCTAssertEqual(dns.key, .address(proto: .udp, addr: v4("192.168.10.100"), port: 53))
        XCTAssertEqual(dns.forward, .tunnel)
        XCTAssertTrue(dns.ops)
        XCTAssertEqual(dns.schedFlags, ["sh-port"])
        let misc = dns.realServers[0].checkers[0]
        XCTAssertEqual(misc.kind, .misc)
        XCTAssertEqual(misc.miscPath, "/usr/local/bin/check_dns 10.0.0.31")
        XCTAssertEqual(misc.miscTimeout, 5)
        XCTAssertTrue(misc.miscDynamic)
        XCTAssertEqual(misc.delayLoop, 2.5)
        let udp = dns.realServers[0].checkers[1]
        XCTAssertEqual(udp.kind, .udp)
        XCTAssertTrue(udp.requireReply)
        XCTAssertEqual(udp.payload, Array("hello".utf8))

        let fw = cfg.virtualServers[3]
        XCTAssertEqual(fw.key, .fwmark(mark: 5, family: .inet))
        XCTAssertEqual(fw.realServers[0].checkers[0].kind, .icmp)
        XCTAssertEqual(fw.realServers[0].checkers[0].fall, 4)
        XCTAssertNil(fw.realServers[0].port)
        XCTAssertTrue(fw.realServers[1].checkers.isEmpty)

        // Skipped blocks and directives are reported with their lines.
        XCTAssertTrue(cfg.notices.contains("keepalived.conf: line 2: skipping 'global_defs' block (not used by Switchyard)"),
                      "\(cfg.notices)")
        XCTAssertTrue(cfg.notices.contains("keepalived.conf: line 8: skipping 'vrrp_instance' block (not used by Switchyard)"))
        XCTAssertTrue(cfg.notices.contains { $0.hasPrefix("keepalived.conf: line 23: ignoring 'quorum'") }, "\(cfg.notices)")
    }

    func testDefaults() throws {
        let cfg = try parse("""
        virtual_server 10.1.1.1 8080 {
            real_server 10.1.2.1 80 {
                TCP_CHECK {
                }
            }
        }
        """)
        let vs = cfg.virtualServers[0]
        XCTAssertEqual(vs.scheduler, "wlc")
        XCTAssertEqual(vs.forward, .masq)
        XCTAssertEqual(vs.delayLoop, 60)
        let c = vs.realServers[0].checkers[0]
        XCTAssertEqual(c.connectTimeout, 5)
        XCTAssertEqual(c.fall, 1)
        XCTAssertEqual(c.rise, 1)
        XCTAssertEqual(c.delayBeforeRetry, 1)
        XCTAssertEqual(vs.realServers[0].weight, 1)
        XCTAssertEqual(saveOf(plan: try cfg.plan()), saveOf(rules: """
        -A -t 10.1.1.1:8080 -s wlc
        -a -t 10.1.1.1:8080 -r 10.1.2.1:80 -m -w 1
        """))
    }

    func testIPv6AndFwmarkFamilyAndTunnelOptions() throws {
        let plan = try parse("""
        virtual_server 2001:db8::10 80 {
            lb_kind DR
            real_server 2001:db8::21 80 {
                weight 5
            }
        }
        virtual_server fwmark 7 {
            lb_kind TUN type gue port 6080 remcsum
            real_server 2001:db8::31 0 {
            }
        }
        virtual_server fwmark 8 {
            ip_family inet6
            lb_algo mh
            mh-port
            mh-fallback
            persistence_timeout 300
            persistence_engine sip
        }
        """).plan()
        XCTAssertEqual(saveOf(plan: plan), saveOf(rules: """
        -A -t [2001:db8::10]:80 -s wlc
        -a -t [2001:db8::10]:80 -r [2001:db8::21]:80 -g -w 5
        -A -f 7 -6 -s wlc
        -a -f 7 -6 -r [2001:db8::31]:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum
        -A -f 8 -6 -s mh -p 300 --pe sip -b mh-port,mh-fallback
        """))
    }

    func testAlphaStartsServersDownAndTheSorryServerUp() throws {
        let plan = try parse("""
        virtual_server 10.0.0.1 80 {
            alpha
            sorry_server 10.0.9.9 80
            real_server 10.0.1.1 80 {
                inhibit_on_failure
                weight 4
                TCP_CHECK {
                }
            }
            real_server 10.0.1.2 80 {
                TCP_CHECK {
                }
            }
            real_server 10.0.1.3 80 {
                weight 2
            }
        }
        virtual_server 10.0.0.1 81 {
            alpha
            sorry_server 10.0.9.9 81
            sorry_server_lvs_method DR
            real_server 10.0.1.1 81 {
                TCP_CHECK {
                }
            }
        }
        virtual_server 10.0.0.1 82 {
            sorry_server 10.0.9.9 82
            sorry_server_inhibit
            real_server 10.0.1.1 82 {
            }
        }
        """).plan()
        // Port 80: 10.0.1.3 has no checker, so it is up and no sorry server is
        // needed; 10.0.1.1 is quiesced, 10.0.1.2 absent. Port 81: all down ->
        // sorry server (DR). Port 82: sorry_server_inhibit keeps it at weight 0.
        XCTAssertEqual(saveOf(plan: plan), saveOf(rules: """
        -A -t 10.0.0.1:80 -s wlc
        -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 0
        -a -t 10.0.0.1:80 -r 10.0.1.3:80 -m -w 2
        -A -t 10.0.0.1:81 -s wlc
        -a -t 10.0.0.1:81 -r 10.0.9.9:81 -g -w 1
        -A -t 10.0.0.1:82 -s wlc
        -a -t 10.0.0.1:82 -r 10.0.1.1:82 -m -w 1
        -a -t 10.0.0.1:82 -r 10.0.9.9:82 -m -w 0
        """))
    }

    func testInclude() throws {
        let files = [
            "conf.d/a.conf": """
            virtual_server 10.0.0.1 80 {
                real_server 10.0.1.1 80 {
                }
            }
            """,
            "conf.d/b.conf": "include ../extra/c.cfg\n",
            "conf.d/../extra/c.cfg": """
            virtual_server 10.0.0.2 80 {
                lb_algo rr
            }
            """,
        ]
        let cfg = try KeepalivedConfig.parse("include conf.d/*.conf\n", file: "keepalived.conf",
                                             reader: ConfigFileReader(read: { files[$0] }, glob: { p in
            p == "conf.d/*.conf" ? ["conf.d/a.conf", "conf.d/b.conf"] : (files[p] != nil ? [p] : [])
        }))
        XCTAssertEqual(cfg.virtualServers.map(\.scheduler), ["wlc", "rr"])
        XCTAssertEqual(cfg.virtualServers[1].location, ConfigLocation(file: "conf.d/../extra/c.cfg", line: 1))
        // An error inside an included file names that file.
        let e = error("include bad.conf\n", files: ["bad.conf": "\n\nvirtual_server 10.0.0.300 80 {\n}\n"])
        XCTAssertEqual(e?.description, "bad.conf: line 3: invalid virtual server address '10.0.0.300'")
        XCTAssertEqual(error("include missing.conf\n")?.description, "keepalived.conf: line 1: include 'missing.conf': no such file")
    }

    func testErrorsNameTheLine() {
        func check(_ text: String, _ line: Int, _ message: String, file: StaticString = #filePath, l: UInt = #line) {
            guard let e = error(text) else { return XCTFail("accepted", file: file, line: l) }
            XCTAssertEqual(e.line, line, "\(e)", file: file, line: l)
            XCTAssertEqual(e.message, message, file: file, line: l)
        }
        check("virtual_server 10.0.0.1 80 {\n  lb_kind XYZ\n}\n", 2, "invalid lb_kind 'XYZ' (expected NAT, DR or TUN)")
        check("virtual_server 10.0.0.1 80 {\n  real_server 10.0.1.1 80 {\n    weight\n  }\n}\n", 3, "'weight' needs a value")
        check("virtual_server 10.0.0.1 80 {\n  real_server 10.0.1.1 80 {\n    weight 70000\n  }\n}\n", 3,
              "invalid value '70000' for weight (expected 0..65535)")
        check("virtual_server 10.0.0.1 80 {\n  delay_loop abc\n}\n", 2, "invalid value 'abc' for delay_loop")
        check("\nvirtual_server 10.0.0.1 80 {\n  real_server 10.0.1.1 80 {\n", 3, "block opened here is not closed (missing '}')")
        check("virtual_server 10.0.0.1 80 {\n}\n}\n", 3, "unexpected '}'")
        check("virtual_server 10.0.0.1 {\n}\n", 1, "virtual_server needs an address and a port")
        check("virtual_server 10.0.0.1 80\n", 1, "virtual_server needs a { } block")
        check("virtual_server 10.0.0.1 99999 {\n}\n", 1, "invalid port '99999'")
        check("virtual_server 10.0.0.1 80 {\n  protocol ICMP\n}\n", 2, "invalid protocol 'ICMP' (expected TCP, UDP or SCTP)")
        check("virtual_server 10.0.0.1 80 {\n  persistence_timeout 0\n}\n", 2,
              "invalid value '0' for persistence_timeout (expected 1..2678400)")
        check("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  HTTP_GET {\n   url {\n    path /\n    status_code 99\n   }\n  }\n }\n}\n",
              6, "invalid status_code '99'")
        check("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  HTTP_GET {\n   url {\n    path /\n    digest abc\n   }\n  }\n }\n}\n",
              6, "digest must be 32 hexadecimal digits (an MD5)")
        check("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  HTTP_GET {\n   url {\n    digest 00000000000000000000000000000000\n   }\n  }\n }\n}\n",
              4, "url needs a path")
        check("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  SSL_GET {\n  }\n }\n}\n", 3,
              "SSL_GET needs at least one url { path ... }")
        check("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  MISC_CHECK {\n   misc_timeout 3\n  }\n }\n}\n", 3,
              "MISC_CHECK needs misc_path")
        check("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  MISC_CHECK {\n   misc_path \"/bin/true\n  }\n }\n}\n", 4,
              "unterminated quoted string")
        check("virtual_server 10.0.0.1 80 {\n}\nvirtual_server 10.0.0.1 80 {\n}\n", 3, "virtual_server already defined at keepalived.conf: line 1")
        check("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n real_server 10.0.1.1 80 {\n }\n}\n", 4,
              "real_server 10.0.1.1:80 already defined at keepalived.conf: line 2")
        // Refused by the ipvsadm grammar: the message is ipvsadm's, the line the statement's.
        check("\nvirtual_server 10.0.0.1 0 {\n}\n", 2, "Zero port specified for non-persistent service")
        check("virtual_server 10.0.0.1 53 {\n  ops\n}\n", 1, "One-Packet Scheduling is only for UDP virtual services")
        check("virtual_server 10.0.0.1 80 {\n  sorry_server_inhibit\n}\n", 2, "sorry_server_inhibit before sorry_server")
        check("virtual_server 10.0.0.1 80 {\n  real_server 10.0.1.1 80 {\n    TCP_CHECK {\n      connect_port x\n    }\n  }\n}\n", 4,
              "invalid port 'x'")
        check("{\n}\n", 1, "unexpected '{' (a block must follow a keyword)")
    }

    func testUnknownDirectivesAreNoticedNotFatal() throws {
        let cfg = try parse("""
        vrrp_script chk {
            script "/bin/true"
        }
        virtual_server 10.0.0.1 80 {
            frobnicate 3
            real_server 10.0.1.1 80 {
                notify_down /bin/false
                DNS_CHECK {
                    type A
                }
                TCP_CHECK {
                    mystery yes
                }
            }
        }
        virtual_server group G1 {
        }
        """)
        XCTAssertEqual(cfg.notices, [
            "keepalived.conf: line 1: skipping 'vrrp_script' block (not used by Switchyard)",
            "keepalived.conf: line 5: ignoring unknown directive 'frobnicate' in virtual_server",
            "keepalived.conf: line 7: ignoring 'notify_down' (not supported by Switchyard)",
            "keepalived.conf: line 8: skipping unknown block 'DNS_CHECK' in real_server",
            "keepalived.conf: line 12: ignoring unknown directive 'mystery' in TCP_CHECK",
            "keepalived.conf: line 16: skipping 'virtual_server group' (virtual_server_group is not supported)",
        ])
        XCTAssertEqual(cfg.virtualServers.count, 1)
        XCTAssertEqual(cfg.virtualServers[0].realServers[0].checkers.map(\.kind), [.tcp])
    }

    func testReconcileAddsAndEditsOnly() throws {
        let current = """
        -A -t 10.0.0.1:80 -s rr
        -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1
        -A -t 10.0.0.9:80 -s wlc
        """
        let desired = """
        -A -t 10.0.0.1:80 -s wrr
        -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 5
        -a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 1
        -A -u 10.0.0.1:53 -s rr
        """
        let diff = try reconcileRules(current: current, desired: desired).get()
        XCTAssertEqual(diff, """
        -E -t 10.0.0.1:80 -s wrr
        -e -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 5
        -a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 1
        -A -u 10.0.0.1:53 -s rr

        """)
        XCTAssertEqual(try reconcileRules(current: desired, desired: desired).get(), "")
        // Applying the difference gives the desired services (the extra one stays).
        let t = IPVSTable()
        _ = applyRules(current, to: t, environment: testEnv())
        _ = applyRules(diff, to: t, environment: testEnv())
        XCTAssertEqual(IpvsadmFormat.save(t.services, numeric: true, names: testNames),
                       saveOf(rules: desired + "\n-A -t 10.0.0.9:80 -s wlc"))
    }
}
