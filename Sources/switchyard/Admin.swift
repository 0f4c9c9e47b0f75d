// `switchyard adm`: the ipvsadm front end (talks to a running instance over the admin socket).
import Dataplane

enum Admin {
    static func main(_ args: [String], program: String) -> Int32 {
        FileHandleOut.stderr("\(program): the admin socket is not available in this build yet\n")
        return 2
    }
}
