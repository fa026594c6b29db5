"""cryptmail.crypto.dovecot: the Dovecot 2.3 mail-crypt codec, for import and export.

Part of the hazmat floor: pure functions over bytes and caller-supplied streams, no
file system access. The format is ../shared/spec/dovecot-mail-crypt-format.md; its
vectors live in tests/vectors/dovecot-2.3/.

Reading (folder-key mode):

    attributes = parse_attributes(attributes_bytes)
    keyring = keyring_from_attributes(attributes, Password.from_str(password))
    with open(mail_path, "rb") as mail:
        for piece in read_dovecot_file(mail, keyring):   # verified before the first piece
            ...

Global keys: `DovecotKeyring([load_global_private_key(pem, password)])`.
Writing: `write_dovecot_file(plaintext, folder_public_key)`; keys with
`dump_private_key_string` / `dump_public_key_string`, stored with
`DovecotAttributes.with_user_key` / `with_folder_key` and `dump_attributes`.
"""

from cryptmail.crypto.dovecot._attributes import (
    DovecotAttributes,
    DovecotKeySet,
    attributes_from_entries,
    attributes_to_entries,
    dump_attributes,
    dump_dict_file,
    parse_attributes,
    parse_dict_file,
)
from cryptmail.crypto.dovecot._constants import STREAM_MAGIC
from cryptmail.crypto.dovecot._header import (
    DovecotHeader,
    DovecotRecipient,
    parse_dovecot_header,
    read_dovecot_header,
)
from cryptmail.crypto.dovecot._keyfiles import load_global_private_key, load_global_public_key
from cryptmail.crypto.dovecot._keyring import (
    DovecotKeyring,
    keyring_from_attributes,
    unlock_user_keys,
)
from cryptmail.crypto.dovecot._keys import (
    DovecotPrivateKey,
    DovecotPublicKey,
    export_private_key_pem,
    generate_dovecot_key,
    key_id,
    mpi_decode,
    mpi_encode,
    old_key_id,
    public_key_der,
)
from cryptmail.crypto.dovecot._keystrings import (
    KeyStringInfo,
    dump_private_key_string,
    dump_public_key_string,
    inspect_key_string,
    load_private_key_string,
    load_public_key_string,
)
from cryptmail.crypto.dovecot._stream import (
    decrypt_dovecot_bytes,
    encrypt_dovecot_stream,
    read_dovecot_file,
    write_dovecot_file,
)
from cryptmail.crypto.dovecot._uidlist import (
    Uidlist,
    UidlistRecord,
    maildir_base_name,
    parse_uidlist,
    read_mailbox_guid,
)

__all__ = [
    "STREAM_MAGIC",
    "DovecotAttributes",
    "DovecotHeader",
    "DovecotKeySet",
    "DovecotKeyring",
    "DovecotPrivateKey",
    "DovecotPublicKey",
    "DovecotRecipient",
    "KeyStringInfo",
    "Uidlist",
    "UidlistRecord",
    "attributes_from_entries",
    "attributes_to_entries",
    "decrypt_dovecot_bytes",
    "dump_attributes",
    "dump_dict_file",
    "dump_private_key_string",
    "dump_public_key_string",
    "encrypt_dovecot_stream",
    "export_private_key_pem",
    "generate_dovecot_key",
    "inspect_key_string",
    "key_id",
    "keyring_from_attributes",
    "load_global_private_key",
    "load_global_public_key",
    "load_private_key_string",
    "load_public_key_string",
    "maildir_base_name",
    "mpi_decode",
    "mpi_encode",
    "old_key_id",
    "parse_attributes",
    "parse_dict_file",
    "parse_dovecot_header",
    "parse_uidlist",
    "public_key_der",
    "read_dovecot_file",
    "read_dovecot_header",
    "read_mailbox_guid",
    "unlock_user_keys",
    "write_dovecot_file",
]
