// Rules files: what `ipvsadm -R` reads and `--config FILE` loads. Each
// non-blank line that is not a comment is one ipvsadm argument list,
// optionally starting with the word `ipvsadm` (so `ipvsadm -S` output and
// shell scripts of ipvsadm calls both load). Words split like a shell's:
// blanks separate, '...' and "..." quote, a backslash escapes, and an
// unquoted word starting with '#' starts a comment.

import IPVS

/// A refused rules file: the 1-based line and ipvsadm's own error text.
public struct RuleError: Error, Sendable, Equatable {
    public var line: Int
    public var message: String
    /// What ipvsadm would have exited with for that line.
    public var exitCode: Int32
    public init(line: Int, message: String, exitCode: Int32 = 2) {
        self.line = line; self.message = message; self.exitCode = exitCode
    }
}

/// Split one line into words; nil for an unterminated quote.
public func splitRuleWords(_ line: Substring) -> [String]? {
    var words: [String] = []
    var cur = ""
    var inWord = false
    var it = line.makeIterator()
    while let c = it.next() {
        switch c {
        case " ", "\t", "\r", "\n":
            if inWord { words.append(cur); cur = ""; inWord = false }
        case "#" where !inWord:
            return words
        case "'":
            inWord = true
            var closed = false
            while let d = it.next() {
                if d == "'" { closed = true; break }
                cur.append(d)
            }
            if !closed { return nil }
        case "\"":
            inWord = true
            var closed = false
            while let d = it.next() {
                if d == "\"" { closed = true; break }
                if d == "\\" {
                    guard let e = it.next() else { return nil }
                    if e == "\"" || e == "\\" || e == "$" || e == "`" { cur.append(e) } else { cur.append(d); cur.append(e) }
                    continue
                }
                cur.append(d)
            }
            if !closed { return nil }
        case "\\":
            inWord = true
            if let e = it.next() { cur.append(e) }
        default:
            inWord = true
            cur.append(c)
        }
    }
    if inWord { words.append(cur) }
    return words
}

/// Parse a whole rules file. Any bad line refuses the file.
public func parseRules(_ text: String, program: String = "ipvsadm",
                       names: NameResolver = .system) -> Result<[IpvsadmCommand], RuleError> {
    var cmds: [IpvsadmCommand] = []
    var lineNo = 0
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        lineNo += 1
        guard var words = splitRuleWords(line) else {
            return .failure(RuleError(line: lineNo, message: "unterminated quote", exitCode: 2))
        }
        if words.first == "ipvsadm" { words.removeFirst() }
        if words.isEmpty { continue }
        switch IpvsadmCommand.parse(words, program: program, names: names) {
        case .failure(let e):
            return .failure(RuleError(line: lineNo, message: e.message, exitCode: e.exitCode))
        case .success(let c):
            switch c.kind {
            case .restore:
                // ipvsadm refuses -R while restoring ("avoid infinite loop").
                let e = IpvsadmError.tryHelp(program)
                return .failure(RuleError(line: lineNo, message: e.message, exitCode: e.exitCode))
            case .help, .version:
                return .failure(RuleError(line: lineNo, message: "'\(words[0])' is not allowed in a rules file",
                                          exitCode: 2))
            default:
                cmds.append(c)
            }
        }
    }
    return .success(cmds)
}

/// Load a rules file into a table, as `--config FILE` does: parse it all
/// (refusing it on the first bad line), then apply the lines in order.
/// Returns the first table error instead of continuing, with its line.
public func applyRules(_ text: String, to table: IPVSAdministrable,
                       environment env: AdmEnvironment = AdmEnvironment()) -> Result<Void, RuleError> {
    // Keep line numbers: parse line by line again to pair commands with lines.
    var lineNo = 0
    var pending: [(Int, IpvsadmCommand)] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        lineNo += 1
        switch parseRules(String(line), program: env.program, names: env.names) {
        case .failure(let e):
            return .failure(RuleError(line: lineNo, message: e.message, exitCode: e.exitCode))
        case .success(let cs):
            for c in cs { pending.append((lineNo, c)) }
        }
    }
    for (n, c) in pending {
        var out = "", err = ""
        let rc = execute(c, on: table, environment: env, output: &out, errors: &err)
        if rc != 0 {
            var m = err
            while m.hasSuffix("\n") { m.removeLast() }
            return .failure(RuleError(line: n, message: m, exitCode: rc))
        }
    }
    return .success(())
}
