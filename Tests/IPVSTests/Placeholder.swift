import XCTest
final class PlaceholderIPVSTests: XCTestCase { func testNothing() {} }
