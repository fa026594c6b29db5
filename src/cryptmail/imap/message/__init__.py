"""cryptmail.imap.message: what IMAP sees of a stored message, pure (no I/O, no SQL).

* :class:`MessageAnalyzer` streams a message once (MIME structure, RFC 822 headers) and
  yields a :class:`MessageAnalysis` (part map, ENVELOPE, BODY, BODYSTRUCTURE) that can be
  cached; :meth:`PartMap.plan`, :class:`VirtualStream` and the header filters serve
  ``BODY[section]<partial>``.
* SEARCH: :func:`compile_search` over :class:`MessageView` objects, with the decoded
  text of headers and parts from :func:`iter_message_text`.

Builds on ``imap.wire`` (sections, response strings); never imports ``imap.server``.
"""

from cryptmail.imap.message._analysis import MessageAnalysis, MessageAnalyzer, analyze_message
from cryptmail.imap.message._envelope import Address, Envelope
from cryptmail.imap.message._partmap import PartEntry, PartMap, SectionPlan, VirtualStream
from cryptmail.imap.message._search import MessageView, SearchContext, compile_search, search
from cryptmail.imap.message._sections import filter_header, header_section
from cryptmail.imap.message._textsearch import decode_header_value, iter_message_text

__all__ = [
    "Address",
    "Envelope",
    "MessageAnalysis",
    "MessageAnalyzer",
    "MessageView",
    "PartEntry",
    "PartMap",
    "SearchContext",
    "SectionPlan",
    "VirtualStream",
    "analyze_message",
    "compile_search",
    "decode_header_value",
    "filter_header",
    "header_section",
    "iter_message_text",
    "search",
]
