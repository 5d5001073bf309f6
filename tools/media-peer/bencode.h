// Bencoding, the dictionary format of rtpengine's ng control protocol: byte strings,
// integers, lists and dictionaries.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rwg::media_peer {

class Bencode {
 public:
  enum class Kind { kString, kInteger, kList, kDict };

  Bencode() = default;  // empty string
  static Bencode String(absl::string_view s);
  static Bencode Integer(int64_t n);
  static Bencode List();
  static Bencode Dict();
  static Bencode StringList(const std::vector<std::string>& items);

  Kind kind() const { return kind_; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_integer() const { return kind_ == Kind::kInteger; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }

  const std::string& str() const { return str_; }
  int64_t integer() const { return integer_; }
  // List items, or dictionary values in key order.
  const std::vector<Bencode>& items() const { return items_; }
  const std::vector<std::string>& keys() const { return keys_; }

  // Appends to a list.
  Bencode& Append(Bencode item);
  // Sets a dictionary entry, replacing one with the same key.
  Bencode& Set(absl::string_view key, Bencode value);
  // The dictionary entry for `key`, or null (also when this is not a dictionary).
  const Bencode* Find(absl::string_view key) const;
  // The string entry for `key`, or "" when absent or not a string.
  std::string GetString(absl::string_view key) const;

  // Canonical encoding: dictionary keys sorted.
  std::string Encode() const;
  void EncodeTo(std::string& out) const;
  // Parses exactly one value filling all of `data`. INVALID_ARGUMENT with the offset of the
  // problem otherwise. Nesting deeper than 32 levels is refused.
  static absl::StatusOr<Bencode> Decode(absl::string_view data);

 private:
  Kind kind_ = Kind::kString;
  std::string str_;
  int64_t integer_ = 0;
  std::vector<std::string> keys_;  // dictionaries: keys_[i] names items_[i]
  std::vector<Bencode> items_;
};

}  // namespace rwg::media_peer
