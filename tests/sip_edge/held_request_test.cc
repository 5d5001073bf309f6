// HeldRequest over real sofia-sip transactions: a client agent sends requests over UDP on the
// loopback to a server agent whose leg callback holds them.
#include "services/sip_edge/held_request.h"

#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/su_wait.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

namespace rwg::sip_edge {
namespace {

class HeldRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(su_init(), 0);
    root_ = su_root_create(nullptr);
    ASSERT_NE(root_, nullptr);
    server_ = nta_agent_create(root_, URL_STRING_MAKE("sip:127.0.0.1:*;transport=udp"), nullptr,
                               nullptr, NTATAG_UA(1), TAG_END());
    ASSERT_NE(server_, nullptr);
    leg_ =
        nta_leg_tcreate(server_, &HeldRequestTest::OnRequest,
                        reinterpret_cast<nta_leg_magic_t*>(this), NTATAG_NO_DIALOG(1), TAG_END());
    ASSERT_NE(leg_, nullptr);
    // The client cancels an INVITE at once, without waiting for a provisional answer.
    client_ = nta_agent_create(root_, URL_STRING_MAKE("sip:127.0.0.1:*;transport=udp"), nullptr,
                               nullptr, NTATAG_CANCEL_2543(1), TAG_END());
    ASSERT_NE(client_, nullptr);
    const sip_contact_t* contact = nta_agent_contact(server_);
    ASSERT_NE(contact, nullptr);
    target_ = std::string("sip:held@127.0.0.1:") + contact->m_url->url_port;
  }

  void TearDown() override {
    held_.reset();
    if (orq_ != nullptr) nta_outgoing_destroy(orq_);
    if (leg_ != nullptr) nta_leg_destroy(leg_);
    if (client_ != nullptr) nta_agent_destroy(client_);
    if (server_ != nullptr) nta_agent_destroy(server_);
    if (root_ != nullptr) su_root_destroy(root_);
    su_deinit();
  }

  // The leg callback: holds the request, or lets `at_once` handle it before it returns.
  static int OnRequest(nta_leg_magic_t* magic, nta_leg_t* /*leg*/, nta_incoming_t* irq,
                       const sip_t* /*sip*/) {
    auto* self = reinterpret_cast<HeldRequestTest*>(magic);
    self->irq_ = irq;
    self->held_ = std::make_shared<HeldRequest>(irq, self->responses_);
    if (self->at_once_) self->held_->Resume("test", self->at_once_);
    return self->held_->Release();
  }

  static int OnResponse(nta_outgoing_magic_t* magic, nta_outgoing_t* orq, const sip_t* sip) {
    auto* self = reinterpret_cast<HeldRequestTest*>(magic);
    const int status = sip != nullptr ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status >= 200) ++self->finals_;
    self->status_ = status;
    return 0;
  }

  void Send(const char* method) {
    const std::string request = std::string(method) + " " + target_ + " SIP/2.0";
    const std::string cseq = std::string("1 ") + method;
    msg_t* msg = nta_msg_create(client_, 0);
    sip_add_tl(msg, sip_object(msg), SIPTAG_REQUEST_STR(request.c_str()),
               SIPTAG_FROM_STR("<sip:phone@127.0.0.1>;tag=held-test"),
               SIPTAG_TO_STR("<sip:held@127.0.0.1>"), SIPTAG_CALL_ID_STR("held-test"),
               SIPTAG_CSEQ_STR(cseq.c_str()), SIPTAG_MAX_FORWARDS_STR("70"), TAG_END());
    orq_ = nta_outgoing_mcreate(client_, &HeldRequestTest::OnResponse,
                                reinterpret_cast<nta_outgoing_magic_t*>(this), nullptr, msg,
                                TAG_END());
    ASSERT_NE(orq_, nullptr);
  }

  // Runs the loop until `done` (at most 5 s).
  bool RunUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 500 && !done(); ++i) su_root_step(root_, 10);
    return done();
  }
  // Runs the loop for `ms` milliseconds.
  void RunFor(int ms) {
    for (int i = 0; i < ms / 10; ++i) su_root_step(root_, 10);
  }

  double Answered(const std::string& method, int status) {
    return responses_.Add({{"method", method}, {"code", std::to_string(status)}}).Value();
  }

  prometheus::Registry registry_;
  prometheus::Family<prometheus::Counter>& responses_ =
      prometheus::BuildCounter().Name("responses_total").Register(registry_);
  su_root_t* root_ = nullptr;
  nta_agent_t* server_ = nullptr;
  nta_agent_t* client_ = nullptr;
  nta_leg_t* leg_ = nullptr;
  nta_outgoing_t* orq_ = nullptr;
  std::string target_;
  std::function<int(const sip_t*)> at_once_;
  std::shared_ptr<HeldRequest> held_;
  nta_incoming_t* irq_ = nullptr;  // the request the leg callback got
  int status_ = 0;
  int finals_ = 0;
};

TEST_F(HeldRequestTest, HandledAtOnceTheStatusIsTheLegCallbacks) {
  std::string method;
  at_once_ = [&](const sip_t* request) {
    method = request->sip_request->rq_method_name;
    return 403;
  };
  Send("OPTIONS");
  ASSERT_TRUE(RunUntil([&] { return finals_ > 0; }));
  EXPECT_EQ(status_, 403);
  EXPECT_EQ(method, "OPTIONS");
  EXPECT_TRUE(held_->held());
  EXPECT_EQ(Answered("OPTIONS", 403), 0) << "sofia-sip answered it, as the callback's status";
}

TEST_F(HeldRequestTest, HeldItIsAnsweredWhenResumed) {
  Send("OPTIONS");
  ASSERT_TRUE(RunUntil([&] { return held_ != nullptr; }));
  EXPECT_TRUE(held_->held());
  RunFor(100);
  EXPECT_EQ(finals_, 0) << "nothing answered while the request waits";
  std::string method;
  held_->Resume("test", [&](const sip_t* request) {
    method = request->sip_request->rq_method_name;
    return 480;
  });
  ASSERT_TRUE(RunUntil([&] { return finals_ > 0; }));
  EXPECT_EQ(status_, 480);
  EXPECT_EQ(method, "OPTIONS");
  EXPECT_EQ(Answered("OPTIONS", 480), 1);
}

TEST_F(HeldRequestTest, AnAnswerTheBodySentIsNotSentAgain) {
  Send("OPTIONS");
  ASSERT_TRUE(RunUntil([&] { return held_ != nullptr; }));
  held_->Resume("test", [&](const sip_t*) {
    nta_incoming_treply(irq_, SIP_486_BUSY_HERE, TAG_END());
    return 486;
  });
  ASSERT_TRUE(RunUntil([&] { return finals_ > 0; }));
  RunFor(200);
  EXPECT_EQ(finals_, 1);
  EXPECT_EQ(status_, 486);
  EXPECT_EQ(Answered("OPTIONS", 486), 0) << "counted by whoever answered, not here";
}

TEST_F(HeldRequestTest, WhatTheBodyThrowsIsAnswered500) {
  Send("OPTIONS");
  ASSERT_TRUE(RunUntil([&] { return held_ != nullptr; }));
  held_->Resume("test", [](const sip_t*) -> int { throw std::runtime_error("bad bytes"); });
  ASSERT_TRUE(RunUntil([&] { return finals_ > 0; }));
  EXPECT_EQ(status_, 500);
  EXPECT_EQ(Answered("OPTIONS", 500), 1);
}

TEST_F(HeldRequestTest, AnInviteCancelledWhileHeldIsNotHandled) {
  Send("INVITE");
  ASSERT_TRUE(RunUntil([&] { return held_ != nullptr; }));
  nta_outgoing_cancel(orq_);
  ASSERT_TRUE(RunUntil([&] { return finals_ > 0; }));
  EXPECT_EQ(status_, 487) << "sofia-sip answered the INVITE itself";
  bool ran = false;
  held_->Resume("test", [&](const sip_t*) {
    ran = true;
    return 503;
  });
  EXPECT_FALSE(ran);
  RunFor(200);
  EXPECT_EQ(finals_, 1);
  EXPECT_EQ(status_, 487);
  EXPECT_EQ(Answered("INVITE", 503), 0);
}

}  // namespace
}  // namespace rwg::sip_edge
