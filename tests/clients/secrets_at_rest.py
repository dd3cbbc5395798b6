"""Looks for a user's login secrets in every file under a data dir, with hashlib's own
PBKDF2 and HMAC (an implementation independent of the server's).

usage: secrets_at_rest.py DATA_DIR USER PASSWORD

Every 32-hex-digit string in the files is tried as the user's SCRAM salt (4096 iterations,
PostgreSQL's and Blueshift's count). Prints one JSON object:
  stored_key   the SCRAM StoredKey of (password, some salt found) is in a file: the user's
               secret was found, so the other answers are about the right data;
  salted       the salted password Hi(password, salt, i) is in a file (it logs in by itself);
  client_key   the ClientKey is in a file (it logs in by itself too);
  md5          md5(password || user), the MD5 method's secret, is in a file;
  password     the password itself is in a file.
"""

import hashlib
import hmac
import json
import os
import re
import sys

ITERATIONS = 4096


def main() -> None:
    data_dir, user, password = sys.argv[1:4]
    contents = []
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    contents.append(f.read().lower())
            except OSError:
                pass

    def anywhere(needle: bytes) -> bool:
        return any(needle in c for c in contents)

    salts = set()
    for c in contents:
        salts.update(re.findall(rb"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])", c))
    found = {"stored_key": False, "salted": False, "client_key": False}
    for salt_hex in salts:
        salt = bytes.fromhex(salt_hex.decode())
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        found["stored_key"] |= anywhere(stored_key.hex().encode())
        found["salted"] |= anywhere(salted.hex().encode()) or anywhere(salted)
        found["client_key"] |= anywhere(client_key.hex().encode()) or anywhere(client_key)
    found["md5"] = anywhere(hashlib.md5((password + user).encode()).hexdigest().encode())
    found["password"] = anywhere(password.lower().encode())
    found["files"] = len(contents)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
