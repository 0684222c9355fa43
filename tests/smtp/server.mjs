// An SMTP server for linkd's tests: `node server.mjs DIR [PORT]` listens on
// 127.0.0.1 (PORT, or any free port), prints "listening PORT", and writes
// each message it accepts to DIR as one JSON file (envelope, headers,
// decoded text and HTML). A login is accepted when it is user/secret; a
// session may also send without one. Recipients whose address starts with
// "refused" are turned away for good (550), as a server does for a
// mailbox that does not exist.
import { SMTPServer } from "smtp-server";
import { simpleParser } from "mailparser";
import { writeFileSync, renameSync } from "node:fs";
import { join } from "node:path";

const [dir, port = "0"] = process.argv.slice(2);
let count = 0;

const server = new SMTPServer({
  secure: false,
  authOptional: true,
  allowInsecureAuth: true,
  disabledCommands: ["STARTTLS"],
  logger: false,
  onAuth(auth, _session, callback) {
    if (auth.username === "user" && auth.password === "secret") {
      callback(null, { user: auth.username });
    } else {
      callback(new Error("Invalid username or password"));
    }
  },
  onRcptTo(address, _session, callback) {
    if (address.address.startsWith("refused")) {
      const err = new Error("No such mailbox");
      err.responseCode = 550;
      callback(err);
    } else {
      callback();
    }
  },
  onData(stream, session, callback) {
    simpleParser(stream)
      .then((mail) => {
        const record = {
          from: session.envelope.mailFrom && session.envelope.mailFrom.address,
          to: session.envelope.rcptTo.map((r) => r.address),
          user: session.user || null,
          messageId: mail.messageId || null,
          subject: mail.subject || "",
          text: mail.text || "",
          html: mail.html || "",
        };
        count += 1;
        const name = `${Date.now()}-${process.pid}-${count}.json`;
        // Written whole, then renamed: a reader never sees half a file.
        writeFileSync(join(dir, name + ".tmp"), JSON.stringify(record));
        renameSync(join(dir, name + ".tmp"), join(dir, name));
        callback();
      })
      .catch((err) => callback(err));
  },
});

server.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening ${server.server.address().port}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
