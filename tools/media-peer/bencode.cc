#include "tools/media-peer/bencode.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rwg::media_peer {
namespace {

constexpr int kMaxDepth = 32;

class Parser {
 public:
  explicit Parser(absl::string_view data) : data_(data) {}

  absl::StatusOr<Bencode> ParseAll() {
    absl::StatusOr<Bencode> v = Parse(0);
    if (!v.ok()) return v;
    if (pos_ != data_.size()) return Error("trailing data after the value");
    return v;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("bencode: ", what, " at offset ", pos_));
  }

  // Digits up to `end`, with an optional leading '-' when `allow_sign`.
  absl::StatusOr<int64_t> Number(char end, bool allow_sign) {
    const size_t stop = data_.find(end, pos_);
    if (stop == absl::string_view::npos) return Error("unterminated number");
    absl::string_view digits = data_.substr(pos_, stop - pos_);
    int64_t n = 0;
    if (digits.empty() || (!allow_sign && digits.front() == '-') || !absl::SimpleAtoi(digits, &n)) {
      return Error("bad number");
    }
    pos_ = stop + 1;
    return n;
  }

  absl::StatusOr<Bencode> Parse(int depth) {
    if (depth > kMaxDepth) return Error("nesting too deep");
    if (pos_ >= data_.size()) return Error("unexpected end");
    const char c = data_[pos_];
    if (c == 'i') {
      ++pos_;
      absl::StatusOr<int64_t> n = Number('e', true);
      if (!n.ok()) return n.status();
      return Bencode::Integer(*n);
    }
    if (c == 'l' || c == 'd') {
      ++pos_;
      Bencode v = c == 'l' ? Bencode::List() : Bencode::Dict();
      while (true) {
        if (pos_ >= data_.size()) return Error("unterminated list or dictionary");
        if (data_[pos_] == 'e') {
          ++pos_;
          return v;
        }
        if (c == 'l') {
          absl::StatusOr<Bencode> item = Parse(depth + 1);
          if (!item.ok()) return item;
          v.Append(std::move(*item));
        } else {
          absl::StatusOr<Bencode> key = Parse(depth + 1);
          if (!key.ok()) return key;
          if (!key->is_string()) return Error("dictionary key is not a string");
          absl::StatusOr<Bencode> value = Parse(depth + 1);
          if (!value.ok()) return value;
          v.Set(key->str(), std::move(*value));
        }
      }
    }
    if (c >= '0' && c <= '9') {
      absl::StatusOr<int64_t> n = Number(':', false);
      if (!n.ok()) return n.status();
      if (static_cast<uint64_t>(*n) > data_.size() - pos_) return Error("string runs past the end");
      Bencode v = Bencode::String(data_.substr(pos_, static_cast<size_t>(*n)));
      pos_ += static_cast<size_t>(*n);
      return v;
    }
    return Error("unexpected character");
  }

  absl::string_view data_;
  size_t pos_ = 0;
};

}  // namespace

Bencode Bencode::String(absl::string_view s) {
  Bencode v;
  v.kind_ = Kind::kString;
  v.str_ = std::string(s);
  return v;
}

Bencode Bencode::Integer(int64_t n) {
  Bencode v;
  v.kind_ = Kind::kInteger;
  v.integer_ = n;
  return v;
}

Bencode Bencode::List() {
  Bencode v;
  v.kind_ = Kind::kList;
  return v;
}

Bencode Bencode::Dict() {
  Bencode v;
  v.kind_ = Kind::kDict;
  return v;
}

Bencode Bencode::StringList(const std::vector<std::string>& items) {
  Bencode v = List();
  for (const std::string& s : items) v.Append(String(s));
  return v;
}

Bencode& Bencode::Append(Bencode item) {
  items_.push_back(std::move(item));
  return *this;
}

Bencode& Bencode::Set(absl::string_view key, Bencode value) {
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) {
      items_[i] = std::move(value);
      return *this;
    }
  }
  keys_.emplace_back(key);
  items_.push_back(std::move(value));
  return *this;
}

const Bencode* Bencode::Find(absl::string_view key) const {
  if (!is_dict()) return nullptr;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) return &items_[i];
  }
  return nullptr;
}

std::string Bencode::GetString(absl::string_view key) const {
  const Bencode* v = Find(key);
  return v != nullptr && v->is_string() ? v->str() : std::string();
}

std::string Bencode::Encode() const {
  std::string out;
  EncodeTo(out);
  return out;
}

void Bencode::EncodeTo(std::string& out) const {
  switch (kind_) {
    case Kind::kString:
      absl::StrAppend(&out, str_.size(), ":", str_);
      return;
    case Kind::kInteger:
      absl::StrAppend(&out, "i", integer_, "e");
      return;
    case Kind::kList:
      out.push_back('l');
      for (const Bencode& item : items_) item.EncodeTo(out);
      out.push_back('e');
      return;
    case Kind::kDict: {
      std::vector<size_t> order(keys_.size());
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(),
                [&](size_t a, size_t b) { return keys_[a] < keys_[b]; });
      out.push_back('d');
      for (size_t i : order) {
        absl::StrAppend(&out, keys_[i].size(), ":", keys_[i]);
        items_[i].EncodeTo(out);
      }
      out.push_back('e');
      return;
    }
  }
}

absl::StatusOr<Bencode> Bencode::Decode(absl::string_view data) { return Parser(data).ParseAll(); }

}  // namespace rwg::media_peer
