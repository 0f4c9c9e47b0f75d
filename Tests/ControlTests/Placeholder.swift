import XCTest
final class PlaceholderControlTests: XCTestCase { func testNothing() {} }
